//! Lambda `bootstrap` binaries as Lambda runs them: spawned as processes
//! against a Runtime API stub (this file), measured from spawn to their
//! first `GET /runtime/invocation/next` (init), through their answer to the
//! first event, their peak RSS after it, their size, and their warm latency
//! through the same stub next to a bare GetItem on the same DynamoDB Local.
//!
//! As AWS runs and bills them (issue 24):
//! - `--tls DIR`: the store and the AWS APIs are reached over HTTPS through a
//!   local TLS terminator (`support/tls_terminator.rs`) with a test CA from
//!   DIR (`scripts/bench` makes it), trusted through `SSL_CERT_FILE`, so a
//!   first event pays the handshake it pays on AWS;
//! - `--memory 128,1024,...`: each process runs under the CPU share of that
//!   memory size (memory / 1,769 of one core, `support/cpu_share.rs`); the
//!   same cgroup counts its CPU time, the stable figure here, since wall time
//!   under a quota is bimodal by construction (work past the quota waits for
//!   the next 100 ms period): it is reported as median and p90;
//! - with two sizes or more, a power-tuning table: each function's cost per
//!   million invocations at each size (arm64 price per GB-second and the
//!   request fee) and the cheapest size within the latency bound.
//!
//! Generic: any implementation of an operation can be measured by the same
//! code on the same machine and set beside ours:
//!
//! ```text
//! cargo bench -p system-tests --bench lambda -- \
//!     --bootstrap path/to/bootstrap --event events/get-product-info.json \
//!     [--name label] [--env KEY=VALUE]... [--spawns 20] [--warm 2000] \
//!     [--tls DIR] [--memory 128,1024] [--only NAME,...] [--table NAME=KEY]...
//! ```
//!
//! `--bootstrap` may be given several times, each followed by its own
//! `--event`, `--name` and `--env`s. `--table NAME=KEY` makes a table of
//! another implementation's shape (a string hash key KEY) holding the
//! sample events' product (`KEY` tea-longjing, `name`, `price` 168), which
//! that subject finds through its own `--env`. Without it, every function of this
//! workspace (`target/release/<binary>`, built by `scripts/bench`) is
//! measured with its sample event from `events/` (`--only` picks some),
//! beside a no-op `lambda_http` function (`tests/bin/noop_lambda.rs`): the
//! floor of a process on this machine. Either way the process gets fresh
//! tables on DynamoDB Local (`DYNAMODB_ENDPOINT`) in the template's
//! variables, and a stub of the other AWS APIs they call (SSM
//! `GetParameter`, SNS `Publish`), so payment and publishing functions run
//! their real code paths too; the providers' callbacks load test
//! credentials and get their sample events signed as each provider signs,
//! at each cold start (`support/signed_callbacks.rs`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use system_tests::cpu_share::{CpuShare, FULL_VCPU_MB};
use system_tests::dynamo::TestDb;
use system_tests::signed_callbacks;
use system_tests::template::Template;
use system_tests::tls_terminator::TlsTerminator;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, mpsc};

const RUNTIME: &str = "/2018-06-01/runtime";

/// What the stub saw a function do.
#[derive(Debug)]
enum Seen {
    /// A `GET .../invocation/next`: the function is ready for an event.
    Next,
    /// The answer to an event, with its HTTP status for an API function's
    /// (so a table shows which path a first event took).
    Response {
        request_id: String,
        status: Option<u16>,
    },
    /// `.../invocation/{id}/error` or `.../init/error`.
    Error { body: String },
}

/// When the stub saw it, and the CPU time the function had used by then.
struct Moment {
    at: Instant,
    cpu: Duration,
    seen: Seen,
}

/// The Runtime API, one function process at a time.
struct Stub {
    port: u16,
    seen: mpsc::UnboundedReceiver<Moment>,
    events: mpsc::UnboundedSender<(String, Vec<u8>)>,
}

struct HttpRequest {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

async fn read_request(reader: &mut BufReader<TcpStream>) -> Option<HttpRequest> {
    let mut line = String::new();
    if reader.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut headers = HashMap::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await.ok()?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.ok()?;
    Some(HttpRequest {
        method,
        path,
        headers,
        body,
    })
}

fn http(status: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

fn epoch_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

impl Stub {
    async fn start(function: String, cpu: Arc<CpuShare>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let (events, events_rx) = mpsc::unbounded_channel::<(String, Vec<u8>)>();
        let events_rx = Arc::new(Mutex::new(events_rx));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                // Lambda's own Runtime API does not delay small writes.
                stream.set_nodelay(true).unwrap();
                let (seen, events, function, cpu) = (
                    seen_tx.clone(),
                    events_rx.clone(),
                    function.clone(),
                    cpu.clone(),
                );
                tokio::spawn(async move {
                    let mut reader = BufReader::new(stream);
                    while let Some(req) = read_request(&mut reader).await {
                        let answer = answer_runtime(&req, &seen, &events, &function, &cpu).await;
                        if reader.get_mut().write_all(&answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { port, seen, events }
    }

    /// Waits for what the function does next.
    async fn next_seen(&mut self, limit: Duration) -> Option<Moment> {
        tokio::time::timeout(limit, self.seen.recv())
            .await
            .ok()
            .flatten()
    }
}

async fn answer_runtime(
    req: &HttpRequest,
    seen: &mpsc::UnboundedSender<Moment>,
    events: &Mutex<mpsc::UnboundedReceiver<(String, Vec<u8>)>>,
    function: &str,
    cpu: &CpuShare,
) -> Vec<u8> {
    // The function is waiting for this answer: what it used so far is final.
    let moment = |seen| Moment {
        at: Instant::now(),
        cpu: cpu.used(),
        seen,
    };
    let path = req.path.as_str();
    if req.method == "GET" && path == format!("{RUNTIME}/invocation/next") {
        let _ = seen.send(moment(Seen::Next));
        let Some((id, body)) = events.lock().await.recv().await else {
            return http("500 Internal Server Error", &[], b"");
        };
        return http(
            "200 OK",
            &[
                ("content-type", "application/json".into()),
                ("lambda-runtime-aws-request-id", id),
                (
                    "lambda-runtime-deadline-ms",
                    (epoch_ms() + 10_000).to_string(),
                ),
                (
                    "lambda-runtime-invoked-function-arn",
                    format!("arn:aws:lambda:us-east-1:000000000000:function:{function}"),
                ),
                (
                    "lambda-runtime-trace-id",
                    "Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=0"
                        .into(),
                ),
            ],
            &body,
        );
    }
    if let Some(rest) = path.strip_prefix(&format!("{RUNTIME}/invocation/")) {
        let event = match rest.split_once('/') {
            Some((id, "response")) => Seen::Response {
                request_id: id.to_owned(),
                status: answer_status(&req.body),
            },
            _ => Seen::Error {
                body: String::from_utf8_lossy(&req.body).into_owned(),
            },
        };
        let _ = seen.send(moment(event));
        return http("202 Accepted", &[], b"");
    }
    if path == format!("{RUNTIME}/init/error") {
        let body = String::from_utf8_lossy(&req.body).into_owned();
        let _ = seen.send(moment(Seen::Error { body }));
        return http("202 Accepted", &[], b"");
    }
    http("404 Not Found", &[], b"{}")
}

/// The other AWS APIs the functions call (SSM `GetParameter` for the
/// payment signing secret and the providers' credentials, SNS `Publish` in
/// either protocol), on a port of
/// their own for the whole run, so that the TLS terminator can front them.
async fn start_aws_apis() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            stream.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                while let Some(req) = read_request(&mut reader).await {
                    if reader.get_mut().write_all(&answer_aws(&req)).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn answer_aws(req: &HttpRequest) -> Vec<u8> {
    let target = req.headers.get("x-amz-target").map(String::as_str);
    if target == Some("AmazonSSM.GetParameter") {
        // The sandbox's signing secret and the providers' credentials, by
        // name (`support/signed_callbacks.rs`).
        let asked: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let name = asked["Name"].as_str().unwrap_or_default();
        let Some(value) = signed_callbacks::parameter(name) else {
            return http(
                "400 Bad Request",
                &[("content-type", "application/x-amz-json-1.1".into())],
                br#"{"__type":"ParameterNotFound","message":"no such parameter in the bench"}"#,
            );
        };
        let answer = serde_json::json!({
            "Parameter": {"Name": name, "Type": "SecureString", "Value": value, "Version": 1}
        });
        return http(
            "200 OK",
            &[("content-type", "application/x-amz-json-1.1".into())],
            answer.to_string().as_bytes(),
        );
    }
    if target.is_some_and(|t| t.ends_with(".Publish")) {
        return http(
            "200 OK",
            &[("content-type", "application/x-amz-json-1.0".into())],
            br#"{"MessageId":"bench-message"}"#,
        );
    }
    if String::from_utf8_lossy(&req.body).contains("Action=Publish") {
        return http(
            "200 OK",
            &[("content-type", "text/xml".into())],
            b"<PublishResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\"><PublishResult><MessageId>bench-message</MessageId></PublishResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></PublishResponse>",
        );
    }
    http("404 Not Found", &[], b"{}")
}

/// One binary to measure.
struct Subject {
    name: String,
    bootstrap: PathBuf,
    event: Vec<u8>,
    env: Vec<(String, String)>,
}

/// Where the processes find the store and the other AWS APIs.
struct Endpoints {
    env: Vec<(String, String)>,
    /// The store as the processes reach it, for the bare calls beside them.
    store: aws_sdk_dynamodb::Client,
}

/// Figures for one subject at one memory size.
#[derive(Default)]
struct Figures {
    /// CPU time from spawn to the first `/next`: loading and init.
    init_cpu: Vec<Duration>,
    /// CPU time for the first event (the store's first connection included).
    first_cpu: Vec<Duration>,
    /// Wall time from exec to the first `/next`.
    to_next: Vec<Duration>,
    /// Wall time of the first event, from the stub handing it over.
    first_wall: Vec<Duration>,
    /// Wall time from spawn to the first response, less the moment the
    /// stub takes to hand the event over: what a cold caller waits for.
    cold_total: Vec<Duration>,
    peak_rss_kib: Vec<u64>,
    /// The HTTP statuses of the first events' answers (API functions).
    first_statuses: std::collections::BTreeSet<u16>,
    warm_wall: Vec<Duration>,
    warm_cpu: Vec<Duration>,
    /// Bare GetItem p50 through the same endpoint right after the warm series.
    bare: Duration,
    failure: Option<String>,
}

/// What one cold start measured.
struct Cold {
    init_cpu: Duration,
    first_cpu: Duration,
    to_next: Duration,
    first_wall: Duration,
    first_status: Option<u16>,
    peak_rss_kib: u64,
    /// Each warm invocation's (wall, CPU).
    warm: Vec<(Duration, Duration)>,
}

fn peak_rss_kib(child: &Child) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

/// The process for one cold start, when it began executing and the CPU
/// time its cgroup had used by then.
fn spawn(
    subject: &Subject,
    port: u16,
    endpoints: &Endpoints,
    memory: Option<u64>,
    cpu: &CpuShare,
) -> (Child, Instant, Duration) {
    let mut command = Command::new(&subject.bootstrap);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
        .env("AWS_LAMBDA_FUNCTION_NAME", &subject.name)
        .env(
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            memory.unwrap_or(128).to_string(),
        )
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in endpoints.env.iter().chain(&subject.env) {
        command.env(k, v);
    }
    cpu.spawn(command).unwrap_or_else(|e| {
        panic!(
            "cannot run {} in the benchmark's cgroup: {e} (scripts/bench builds it, and runs as root)",
            subject.bootstrap.display()
        )
    })
}

/// The statuses the first events were answered with ("-": not an API
/// function's answer).
fn first_answer(statuses: &std::collections::BTreeSet<u16>) -> String {
    if statuses.is_empty() {
        return "-".into();
    }
    statuses
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `event` with an `Idempotency-Key` of its own if it has one, so that
/// every invocation does the operation (an order made, a refund filed)
/// instead of replaying the first one's stored answer.
fn with_own_idempotency_key(event: &[u8]) -> Vec<u8> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let Ok(mut parsed) = serde_json::from_slice::<serde_json::Value>(event) else {
        return event.to_vec();
    };
    let Some(key) = parsed["headers"]["idempotency-key"].as_str() else {
        return event.to_vec();
    };
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    parsed["headers"]["idempotency-key"] = format!("{key}-bench-{n}").into();
    serde_json::to_vec(&parsed).unwrap()
}

/// The `statusCode` of an API Gateway answer; `None` for other answers.
fn answer_status(body: &[u8]) -> Option<u16> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()?
        .get("statusCode")?
        .as_u64()
        .and_then(|code| u16::try_from(code).ok())
}

/// What came instead of what was awaited.
fn unexpected(what: &str, seen: Option<Moment>) -> String {
    match seen.map(|m| m.seen) {
        None => format!("{what}: nothing within 10 s"),
        Some(Seen::Error { body }) => format!("{what}: the function reported {body}"),
        Some(other) => format!("{what}: {other:?} instead"),
    }
}

/// One cold start under `memory`'s CPU share: spawn → first `/next` →
/// first event answered, then `warm_invocations` more in the same process.
async fn cold_start(
    subject: &Subject,
    endpoints: &Endpoints,
    memory: Option<u64>,
    cpu: &Arc<CpuShare>,
    warm_invocations: usize,
) -> Result<Cold, String> {
    cpu.set_memory(memory)
        .map_err(|e| format!("setting the CPU quota: {e}"))?;
    if memory.is_some() {
        // A new container starts with its whole quota: idle for a period
        // first, so that what the last process used does not throttle this
        // one (the cgroup's budget is per period, shared by its processes).
        tokio::time::sleep(Duration::from_millis(110)).await;
    }
    let mut stub = Stub::start(subject.name.clone(), cpu.clone()).await;
    let (mut child, spawned, before) = spawn(subject, stub.port, endpoints, memory, cpu);
    let result = async {
        let limit = Duration::from_secs(10);
        let ready = match stub.next_seen(limit).await {
            Some(
                m @ Moment {
                    seen: Seen::Next, ..
                },
            ) => m,
            other => return Err(unexpected("no /next after spawn", other)),
        };
        let events = stub.events.clone();
        // A provider's callback gets its sample signed now: WeChat Pay's and
        // Stripe's signatures are refused after 300 s.
        let event = signed_callbacks::signed_now(&subject.name, &subject.event)
            .unwrap_or_else(|| subject.event.clone());
        let invoke = |n: usize| {
            events
                .send((format!("req-{n}"), with_own_idempotency_key(&event)))
                .unwrap();
            Instant::now()
        };
        let handed = invoke(0);
        let (answered, first_status) = match stub.next_seen(limit).await {
            Some(
                m @ Moment {
                    seen: Seen::Response { status, .. },
                    ..
                },
            ) => (m, status),
            other => return Err(unexpected("first event not answered", other)),
        };
        let peak_rss_kib = peak_rss_kib(&child);
        let mut warm = Vec::with_capacity(warm_invocations);
        for n in 1..=warm_invocations {
            let next = match stub.next_seen(limit).await {
                Some(
                    m @ Moment {
                        seen: Seen::Next, ..
                    },
                ) => m,
                other => return Err(unexpected("no /next after an answer", other)),
            };
            let handed = invoke(n);
            match stub.next_seen(limit).await {
                Some(Moment {
                    at,
                    cpu,
                    seen: Seen::Response { request_id, .. },
                }) if request_id == format!("req-{n}") => {
                    warm.push((at - handed, cpu.saturating_sub(next.cpu)))
                }
                other => return Err(unexpected(&format!("warm event {n} not answered"), other)),
            }
        }
        Ok(Cold {
            init_cpu: ready.cpu.saturating_sub(before),
            first_cpu: answered.cpu.saturating_sub(ready.cpu),
            to_next: ready.at - spawned,
            first_wall: answered.at - handed,
            first_status,
            peak_rss_kib,
            warm,
        })
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// Every subject's cold starts at every memory size, interleaved: round `i`
/// spawns each subject once at each size, so a slow spell of the machine (a
/// JVM collection in DynamoDB Local, another process) spreads over all of
/// them instead of skewing whichever function happened to run then. The
/// warm series runs in each subject's last process at each size, after the
/// others warmed the page cache and DynamoDB Local, and the bare GetItem it
/// is compared with right after it.
async fn measure_all(
    subjects: &[Subject],
    memories: &[Option<u64>],
    endpoints: &Endpoints,
    table: &str,
    args: &Args,
) -> Vec<Vec<Figures>> {
    let cpu = Arc::new(
        CpuShare::create(&format!("shop-bench-{}", std::process::id()))
            .expect("a cgroup for the benchmark (scripts/bench runs as root)"),
    );
    let mut all: Vec<Vec<Figures>> = subjects
        .iter()
        .map(|_| memories.iter().map(|_| Figures::default()).collect())
        .collect();
    for i in 0..args.spawns {
        let last = i + 1 == args.spawns;
        for (subject, per_memory) in subjects.iter().zip(&mut all) {
            for (&memory, figures) in memories.iter().zip(per_memory.iter_mut()) {
                if figures.failure.is_some() {
                    continue;
                }
                let warm = if last { args.warm_at(memory) } else { 0 };
                match cold_start(subject, endpoints, memory, &cpu, warm).await {
                    Ok(cold) => {
                        figures.init_cpu.push(cold.init_cpu);
                        figures.first_cpu.push(cold.first_cpu);
                        figures.to_next.push(cold.to_next);
                        figures.first_wall.push(cold.first_wall);
                        figures.cold_total.push(cold.to_next + cold.first_wall);
                        figures.peak_rss_kib.push(cold.peak_rss_kib);
                        figures.first_statuses.extend(cold.first_status);
                        for (wall, cpu) in cold.warm {
                            figures.warm_wall.push(wall);
                            figures.warm_cpu.push(cpu);
                        }
                    }
                    Err(e) => figures.failure = Some(e),
                }
                if last {
                    figures.bare = bare_get_item(&endpoints.store, table, 500).await;
                }
            }
        }
    }
    all
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(values: &mut [Duration], p: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    values.sort();
    values[((values.len() as f64 - 1.0) * p).round() as usize]
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A table of another implementation's shape, holding the sample product.
async fn add_foreign_table(store: &aws_sdk_dynamodb::Client, name: &str, key: &str) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    store
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(key)
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(key)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("--table {name}: {e:?}"));
    store
        .put_item()
        .table_name(name)
        .item(key, AttributeValue::S("tea-longjing".into()))
        .item("name", AttributeValue::S("Longjing tea".into()))
        .item("price", AttributeValue::N("168".into()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("--table {name}: {e:?}"));
}

/// p50 of a bare GetItem on the products table: the floor a product read
/// through any implementation stands on.
async fn bare_get_item(store: &aws_sdk_dynamodb::Client, table: &str, samples: usize) -> Duration {
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        store
            .get_item()
            .table_name(table)
            .key("productId", AttributeValue::S("tea-longjing".into()))
            .send()
            .await
            .unwrap();
        times.push(t.elapsed());
    }
    percentile(&mut times, 0.5)
}

/// cargo runs benchmarks in the package's folder: a relative path that is
/// not there is taken from the repository's root.
fn in_repo(path: String) -> PathBuf {
    let path = PathBuf::from(path);
    if path.is_relative() && !path.exists() {
        system_tests::repo_root().join(path)
    } else {
        path
    }
}

struct Args {
    subjects: Vec<Subject>,
    spawns: usize,
    warm: usize,
    /// The CPU shares to run under: `None` is a whole machine.
    memories: Vec<Option<u64>>,
    /// The test CA's folder, for HTTPS to the store and the AWS APIs.
    tls: Option<PathBuf>,
    /// Tables of other implementations' shape: (name, string hash key).
    tables: Vec<(String, String)>,
}

impl Args {
    /// The warm series at a memory size: fewer under a small share, where
    /// each invocation waits for its slice of the period.
    fn warm_at(&self, memory: Option<u64>) -> usize {
        match memory {
            None => self.warm,
            Some(mb) => (self.warm as u64 * mb.min(FULL_VCPU_MB) / FULL_VCPU_MB).max(100) as usize,
        }
    }
}

fn parse_memories(list: &str) -> Vec<Option<u64>> {
    list.split(',')
        .map(|size| match size.trim() {
            "none" | "uncapped" => None,
            mb => Some(
                mb.parse()
                    .ok()
                    .filter(|mb| (128..=10_240).contains(mb))
                    .unwrap_or_else(|| {
                        panic!("--memory takes sizes in MB from 128 to 10240 (or none)")
                    }),
            ),
        })
        .collect()
}

fn parse_args() -> Args {
    let root = system_tests::repo_root();
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let read =
        |path: &PathBuf| std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // Each --bootstrap starts a subject; --event, --name and --env after it
    // are its own. --env before any --bootstrap goes to our functions.
    let mut given: Vec<Subject> = Vec::new();
    let mut env = vec![];
    let (mut spawns, mut warm, mut memories, mut tls, mut only) =
        (20, 2000, vec![None], None, None::<Vec<String>>);
    let mut tables = vec![];
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--bootstrap" => {
                let bootstrap = in_repo(value());
                given.push(Subject {
                    name: bootstrap.display().to_string(),
                    bootstrap,
                    event: vec![],
                    env: vec![],
                })
            }
            "--event" => {
                let event = read(&in_repo(value()));
                given
                    .last_mut()
                    .expect("--event follows its --bootstrap")
                    .event = event;
            }
            "--name" => {
                let name = value();
                given
                    .last_mut()
                    .expect("--name follows its --bootstrap")
                    .name = name;
            }
            "--env" => {
                let pair = value();
                let (k, v) = pair.split_once('=').expect("--env KEY=VALUE");
                let pair = (k.to_owned(), v.to_owned());
                match given.last_mut() {
                    Some(subject) => subject.env.push(pair),
                    None => env.push(pair),
                }
            }
            "--spawns" => spawns = value().parse().expect("--spawns N"),
            "--warm" => warm = value().parse().expect("--warm N"),
            "--memory" => memories = parse_memories(&value()),
            "--tls" => tls = Some(in_repo(value())),
            "--only" => only = Some(value().split(',').map(str::to_owned).collect()),
            "--table" => {
                let pair = value();
                let (name, key) = pair.split_once('=').expect("--table NAME=KEY");
                tables.push((name.to_owned(), key.to_owned()));
            }
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(spawns >= 1, "--spawns must be at least 1");
    if let Some(subject) = given.iter().find(|s| s.event.is_empty()) {
        panic!("--bootstrap {} needs its --event FILE", subject.name);
    }
    let subjects = if !given.is_empty() {
        given
    } else {
        let mut binaries: Vec<String> = Template::load()
            .functions()
            .into_iter()
            .map(|(_, binary)| binary)
            .filter(|binary| only.as_ref().is_none_or(|only| only.contains(binary)))
            .collect();
        binaries.sort();
        // The floor first: a no-op lambda_http function (tests/bin/noop_lambda.rs).
        let floor = Subject {
            bootstrap: root.join("target/release/noop-lambda"),
            event: read(&root.join("events/get-product-info.json")),
            name: "noop-lambda".into(),
            env: vec![],
        };
        std::iter::once(floor)
            .chain(binaries.into_iter().map(|binary| Subject {
                bootstrap: root.join("target/release").join(&binary),
                event: read(&root.join("events").join(format!("{binary}.json"))),
                name: binary,
                env: env.clone(),
            }))
            .collect()
    };
    Args {
        subjects,
        spawns,
        warm,
        memories,
        tls,
        tables,
    }
}

/// AWS Lambda's arm64 prices (us-east-1, the first 7.5 billion GB-seconds
/// of a month): per GB-second of billed duration, rounded up to the
/// millisecond, and per request. INIT is billed like the first event's
/// duration.
const PRICE_PER_GB_SECOND: f64 = 0.000_013_333_4;
const PRICE_PER_REQUEST: f64 = 0.000_000_2;
/// The share of invocations that start a new container, for the cost of a
/// cold start (an assumption: a steadily used function; one called once a
/// quarter of an hour is all cold starts).
const COLD_SHARE: f64 = 0.01;
/// The latency bound of the power tuning: a cold caller waits at most this
/// long (p90, spawn to first response), a warm one (p99).
const COLD_BOUND: Duration = Duration::from_millis(250);
const WARM_BOUND: Duration = Duration::from_millis(100);

/// What a million invocations cost at `memory_mb`, with [`COLD_SHARE`] of
/// them cold.
fn cost_per_million(memory_mb: u64, warm: Duration, cold: Duration) -> f64 {
    let billed = |d: Duration| (ms(d).ceil().max(1.0) / 1000.0) * (memory_mb as f64 / 1024.0);
    let per_invocation = PRICE_PER_REQUEST
        + PRICE_PER_GB_SECOND * ((1.0 - COLD_SHARE) * billed(warm) + COLD_SHARE * billed(cold));
    per_invocation * 1e6
}

/// One subject's figures at one size, reduced to what the tables show.
struct Summary {
    memory: Option<u64>,
    cold_p50: Duration,
    cold_p90: Duration,
    warm_p50: Duration,
    warm_p99: Duration,
}

fn summarise(memory: Option<u64>, f: &mut Figures) -> Summary {
    Summary {
        memory,
        cold_p50: percentile(&mut f.cold_total, 0.5),
        cold_p90: percentile(&mut f.cold_total, 0.9),
        warm_p50: percentile(&mut f.warm_wall, 0.5),
        warm_p99: percentile(&mut f.warm_wall, 0.99),
    }
}

/// Every invocation one paid order causes, at most (no batching): the API
/// calls, the provider's callback (Alipay's), the outbox publisher once per event
/// (OrderCreated, PaymentSucceeded, OrderPaid, RebateCredited) and each
/// consumer once per event it takes. Under load the publisher and the
/// consumers take events in batches, so an order costs less.
const ONE_PAID_ORDER: &[(&str, u32)] = &[
    ("create-order", 1),
    ("initiate-payment", 1),
    ("alipay-notify", 1),
    ("publish-events", 4),
    ("update-order-status", 1),
    ("calculate-rebate", 1),
    ("notifier", 3),
    ("analytics", 1),
];

/// The method of AWS Lambda Power Tuning on the measured figures: each
/// size's cost per million invocations, and the cheapest size whose cold
/// p90 and warm p99 stay within the bound (the fastest cold start where
/// none does); then what one paid order costs at the chosen sizes.
fn print_power_tuning(names: &[&str], summaries: &[Vec<Summary>]) {
    let mut chosen_cost: HashMap<&str, f64> = HashMap::new();
    let sizes: Vec<u64> = summaries[0].iter().filter_map(|s| s.memory).collect();
    println!();
    print!("| function |");
    for mb in &sizes {
        print!(" {mb} MB: $ per million (warm p50 ms) |");
    }
    println!(" chosen (MB) | $ per million at it |");
    println!("|---|{}---|---|", "---|".repeat(sizes.len()));
    for (name, per_size) in names.iter().zip(summaries) {
        let sized: Vec<(&Summary, u64)> = per_size
            .iter()
            .filter_map(|s| s.memory.map(|mb| (s, mb)))
            .filter(|(s, _)| s.cold_p50 > Duration::ZERO)
            .collect();
        if sized.is_empty() {
            continue;
        }
        print!("| {name} |");
        for (s, mb) in &sized {
            print!(
                " {:.3} ({:.2}) |",
                cost_per_million(*mb, s.warm_p50, s.cold_p50),
                ms(s.warm_p50)
            );
        }
        let within = |s: &Summary| s.cold_p90 <= COLD_BOUND && s.warm_p99 <= WARM_BOUND;
        let cost = |(s, mb): &(&Summary, u64)| cost_per_million(*mb, s.warm_p50, s.cold_p50);
        let chosen = sized
            .iter()
            .filter(|(s, _)| within(s))
            .min_by(|a, b| cost(a).total_cmp(&cost(b)))
            .or_else(|| sized.iter().min_by_key(|(s, _)| s.cold_p90));
        if let Some(choice) = chosen {
            let mark = if within(choice.0) {
                ""
            } else {
                " (none within the bound)"
            };
            println!(" {}{mark} | {:.3} |", choice.1, cost(choice));
            chosen_cost.insert(name, cost(choice));
        }
    }
    println!(
        "(arm64 ${PRICE_PER_GB_SECOND}/GB-s billed per ms, ${PRICE_PER_REQUEST}/request, {:.0} % of invocations cold with INIT billed; bound: cold total p90 ≤ {} ms and warm p99 ≤ {} ms)",
        COLD_SHARE * 100.0,
        COLD_BOUND.as_millis(),
        WARM_BOUND.as_millis()
    );
    let order: Option<f64> = ONE_PAID_ORDER
        .iter()
        .map(|(name, count)| chosen_cost.get(name).map(|cost| cost * f64::from(*count)))
        .sum();
    if let Some(order) = order {
        let invocations: u32 = ONE_PAID_ORDER.iter().map(|(_, count)| count).sum();
        println!(
            "One paid order ({invocations} invocations at most: {}) at the chosen sizes: ${order:.2} per million orders.",
            ONE_PAID_ORDER
                .iter()
                .map(|(name, count)| format!("{name} × {count}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

async fn run() {
    let args = parse_args();
    let db = TestDb::new().await;
    // The sample events' products, so reads and orders find them.
    db.add_product("tea-longjing", 16800, 1_000_000_000).await;
    db.add_product("chili-oil", 1990, 1_000_000_000).await;
    for (name, key) in &args.tables {
        add_foreign_table(&db.client, name, key).await;
    }
    let store_url = system_tests::required_env("DYNAMODB_ENDPOINT");
    let aws_apis = start_aws_apis().await;
    let mut env: Vec<(String, String)> = db.env.clone().into_iter().collect();
    env.extend(signed_callbacks::env());
    env.extend(
        [
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            (
                "EVENTS_TOPIC_ARN",
                "arn:aws:sns:us-east-1:000000000000:bench-events",
            ),
            (
                "EMAIL_TOPIC_ARN",
                "arn:aws:sns:us-east-1:000000000000:bench-email",
            ),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let endpoints = match &args.tls {
        Some(dir) => {
            let store_port: u16 = store_url
                .rsplit(':')
                .next()
                .and_then(|p| p.trim_end_matches('/').parse().ok())
                .expect("DYNAMODB_ENDPOINT ends with its port");
            let (chain, key) = (dir.join("chain.pem"), dir.join("leaf.key"));
            let store = TlsTerminator::start(&chain, &key, store_port).await;
            let aws = TlsTerminator::start(&chain, &key, aws_apis).await;
            let store_url = format!("https://localhost:{}", store.port);
            let trust = dir.join("trust.pem").display().to_string();
            env.extend([
                (
                    "AWS_ENDPOINT_URL".into(),
                    format!("https://localhost:{}", aws.port),
                ),
                ("AWS_ENDPOINT_URL_DYNAMODB".into(), store_url.clone()),
                ("SSL_CERT_FILE".into(), trust),
            ]);
            let sdk = adapters::db::config_loader()
                .endpoint_url(store_url)
                .load()
                .await;
            Endpoints {
                env,
                store: aws_sdk_dynamodb::Client::new(&sdk),
            }
        }
        None => {
            env.extend([
                (
                    "AWS_ENDPOINT_URL".into(),
                    format!("http://127.0.0.1:{aws_apis}"),
                ),
                ("AWS_ENDPOINT_URL_DYNAMODB".into(), store_url),
            ]);
            Endpoints {
                env,
                store: db.client.clone(),
            }
        }
    };
    let table = db.tables.products.clone();

    // DynamoDB Local's JVM speeds up over its first few thousand calls.
    bare_get_item(&endpoints.store, &table, 3000).await;

    println!(
        "| function | memory (MB) | CPU init p50 (ms) | CPU first event p50 (ms) | exec → /next p50 (ms) | first event p50 (ms) | cold total p50 / p90 (ms) | warm CPU p50 / p99 (ms) | warm p50 / p99 (ms) | peak RSS (MiB) | binary (MiB) | deployed arm64 (MiB) | warm p50 / bare GetItem p50 | first answer |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut figures = measure_all(&args.subjects, &args.memories, &endpoints, &table, &args).await;
    let mut summaries = Vec::new();
    for (subject, per_memory) in args.subjects.iter().zip(&mut figures) {
        let size = std::fs::metadata(&subject.bootstrap)
            .map(|m| mib(m.len()))
            .unwrap_or(f64::NAN);
        let deployed = std::fs::metadata(
            system_tests::repo_root()
                .join("target/lambda")
                .join(&subject.name)
                .join("bootstrap"),
        )
        .map(|m| format!("{:.2}", mib(m.len())))
        .unwrap_or_else(|_| "-".into());
        let mut per_size = Vec::new();
        for (&memory, f) in args.memories.iter().zip(per_memory.iter_mut()) {
            let shown = memory.map_or("whole core".to_owned(), |mb| mb.to_string());
            if let Some(failure) = &f.failure {
                println!(
                    "| {} | {shown} | failed: {} |",
                    subject.name,
                    failure.replace('|', "/").replace('\n', " ")
                );
                per_size.push(Summary {
                    memory,
                    cold_p50: Duration::ZERO,
                    cold_p90: Duration::ZERO,
                    warm_p50: Duration::ZERO,
                    warm_p99: Duration::ZERO,
                });
                continue;
            }
            let rss = f.peak_rss_kib.iter().max().copied().unwrap_or(0) as f64 / 1024.0;
            let (init, first) = (
                percentile(&mut f.init_cpu, 0.5),
                percentile(&mut f.first_cpu, 0.5),
            );
            let (cpu50, cpu99) = (
                percentile(&mut f.warm_cpu, 0.5),
                percentile(&mut f.warm_cpu, 0.99),
            );
            let (to_next, first_wall) = (
                percentile(&mut f.to_next, 0.5),
                percentile(&mut f.first_wall, 0.5),
            );
            let summary = summarise(memory, f);
            println!(
                "| {} | {shown} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} / {:.1} | {:.2} / {:.2} | {:.2} / {:.2} | {rss:.1} | {size:.2} | {deployed} | {:.2}x | {} |",
                subject.name,
                ms(init),
                ms(first),
                ms(to_next),
                ms(first_wall),
                ms(summary.cold_p50),
                ms(summary.cold_p90),
                ms(cpu50),
                ms(cpu99),
                ms(summary.warm_p50),
                ms(summary.warm_p99),
                summary.warm_p50.as_secs_f64() / f.bare.as_secs_f64(),
                first_answer(&f.first_statuses),
            );
            per_size.push(summary);
        }
        summaries.push(per_size);
    }
    println!(
        "({} spawns per function and size, interleaved; {}; CPU from the process's cgroup (user + system, every thread); cold total = exec → first /next + first event; warm: the last process's series ({} invocations with a whole core, fewer under a share); bare GetItem in-process through the same endpoint right after each warm series; release build for this machine)",
        args.spawns,
        if args.tls.is_some() {
            "HTTPS to the store and the AWS APIs through a local TLS terminator (test CA, RSA 2048)"
        } else {
            "plain HTTP to the store"
        },
        args.warm,
    );
    if args.memories.iter().flatten().count() >= 2 {
        let names: Vec<&str> = args.subjects.iter().map(|s| s.name.as_str()).collect();
        print_power_tuning(&names, &summaries);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // The bench's own client to the store trusts the test CA like the
    // functions do (rustup sets SSL_CERT_FILE to the system's store for
    // the programs it starts); set before any thread exists.
    if let Some(dir) = args
        .iter()
        .position(|a| a == "--tls")
        .and_then(|i| args.get(i + 1))
    {
        let trust = in_repo(dir.clone()).join("trust.pem");
        // SAFETY: the process has one thread yet.
        unsafe { std::env::set_var("SSL_CERT_FILE", trust) };
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run());
}
