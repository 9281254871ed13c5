//! Lambda `bootstrap` binaries as Lambda runs them: spawned as processes
//! against a Runtime API stub (this file), measured from spawn to their
//! first `GET /runtime/invocation/next` (cold start), to their answer to the
//! first event, their peak RSS after it, their size, and their warm latency
//! through the same stub next to a bare GetItem on the same DynamoDB Local.
//!
//! Generic: any implementation of an operation can be measured by the same
//! code on the same machine and set beside ours:
//!
//! ```text
//! cargo bench -p system-tests --bench lambda -- \
//!     --bootstrap path/to/bootstrap --event events/get-product-info.json \
//!     [--name label] [--env KEY=VALUE]... [--spawns 20] [--warm 2000]
//! ```
//!
//! Without `--bootstrap` it measures every function of this workspace
//! (`target/release/<binary>`, built by `scripts/bench`) with its sample
//! event from `events/`, beside a no-op `lambda_http` function
//! (`tests/bin/noop_lambda.rs`): the floor of a process on this machine.
//! Either way the process gets fresh tables on DynamoDB Local
//! (`DYNAMODB_ENDPOINT`) in the template's variables, and this stub also
//! answers SSM `GetParameter` and SNS `Publish`, so payment and publishing
//! functions run their real code paths too.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use system_tests::dynamo::TestDb;
use system_tests::template::Template;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, mpsc};

const RUNTIME: &str = "/2018-06-01/runtime";

/// What the stub saw a function do.
#[derive(Debug)]
enum Seen {
    /// A `GET .../invocation/next`: the function is ready for an event.
    Next,
    /// The answer to an event.
    Response { request_id: String },
    /// `.../invocation/{id}/error` or `.../init/error`.
    Error { body: String },
}

/// The Runtime API (plus SSM and SNS), one function process at a time.
struct Stub {
    port: u16,
    seen: mpsc::UnboundedReceiver<(Instant, Seen)>,
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
    async fn start(function: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let (events, events_rx) = mpsc::unbounded_channel::<(String, Vec<u8>)>();
        let events_rx = Arc::new(Mutex::new(events_rx));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                // Lambda's own Runtime API does not delay small writes.
                stream.set_nodelay(true).unwrap();
                let (seen, events, function) =
                    (seen_tx.clone(), events_rx.clone(), function.clone());
                tokio::spawn(async move {
                    let mut reader = BufReader::new(stream);
                    while let Some(req) = read_request(&mut reader).await {
                        let answer = answer(&req, &seen, &events, &function).await;
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
    async fn next_seen(&mut self, limit: Duration) -> Option<(Instant, Seen)> {
        tokio::time::timeout(limit, self.seen.recv())
            .await
            .ok()
            .flatten()
    }
}

async fn answer(
    req: &HttpRequest,
    seen: &mpsc::UnboundedSender<(Instant, Seen)>,
    events: &Mutex<mpsc::UnboundedReceiver<(String, Vec<u8>)>>,
    function: &str,
) -> Vec<u8> {
    let path = req.path.as_str();
    if req.method == "GET" && path == format!("{RUNTIME}/invocation/next") {
        let _ = seen.send((Instant::now(), Seen::Next));
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
        let now = Instant::now();
        let event = match rest.split_once('/') {
            Some((id, "response")) => Seen::Response {
                request_id: id.to_owned(),
            },
            _ => Seen::Error {
                body: String::from_utf8_lossy(&req.body).into_owned(),
            },
        };
        let _ = seen.send((now, event));
        return http("202 Accepted", &[], b"");
    }
    if path == format!("{RUNTIME}/init/error") {
        let body = String::from_utf8_lossy(&req.body).into_owned();
        let _ = seen.send((Instant::now(), Seen::Error { body }));
        return http("202 Accepted", &[], b"");
    }
    // SSM (JSON protocol): the payment signing secret.
    let target = req.headers.get("x-amz-target").map(String::as_str);
    if target == Some("AmazonSSM.GetParameter") {
        return http(
            "200 OK",
            &[("content-type", "application/x-amz-json-1.1".into())],
            br#"{"Parameter":{"Name":"/bench/secret","Type":"SecureString","Value":"bench-secret","Version":1}}"#,
        );
    }
    // SNS, in either of its protocols.
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

/// Figures for one subject.
struct Figures {
    spawn_to_next: Vec<Duration>,
    first_event: Vec<Duration>,
    peak_rss_kib: Vec<u64>,
    warm: Vec<Duration>,
    /// Bare GetItem p50 right after the warm series.
    bare: Duration,
    failure: Option<String>,
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

fn spawn(subject: &Subject, port: u16, base_env: &[(String, String)]) -> Child {
    let mut command = Command::new(&subject.bootstrap);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
        .env("AWS_LAMBDA_FUNCTION_NAME", &subject.name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in base_env.iter().chain(&subject.env) {
        command.env(k, v);
    }
    command.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot run {}: {e} (scripts/bench builds it)",
            subject.bootstrap.display()
        )
    })
}

/// What came instead of what was awaited.
fn unexpected(what: &str, seen: Option<(Instant, Seen)>) -> String {
    match seen {
        None => format!("{what}: nothing within 10 s"),
        Some((_, Seen::Error { body })) => format!("{what}: the function reported {body}"),
        Some((_, other)) => format!("{what}: {other:?} instead"),
    }
}

/// One cold start: spawn → first `/next` → first event answered.
async fn cold_start(
    subject: &Subject,
    base_env: &[(String, String)],
    warm_invocations: usize,
) -> Result<(Duration, Duration, u64, Vec<Duration>), String> {
    let mut stub = Stub::start(subject.name.clone()).await;
    let spawned = Instant::now();
    let mut child = spawn(subject, stub.port, base_env);
    let result = async {
        let limit = Duration::from_secs(10);
        let ready = match stub.next_seen(limit).await {
            Some((at, Seen::Next)) => at,
            other => return Err(unexpected("no /next after spawn", other)),
        };
        let events = stub.events.clone();
        let invoke = |n: usize| {
            events
                .send((format!("req-{n}"), subject.event.clone()))
                .unwrap();
            Instant::now()
        };
        let handed = invoke(0);
        let answered = match stub.next_seen(limit).await {
            Some((at, Seen::Response { .. })) => at,
            other => return Err(unexpected("first event not answered", other)),
        };
        let rss = peak_rss_kib(&child);
        let mut warm = Vec::with_capacity(warm_invocations);
        for n in 1..=warm_invocations {
            match stub.next_seen(limit).await {
                Some((_, Seen::Next)) => {}
                other => return Err(unexpected("no /next after an answer", other)),
            }
            let handed = invoke(n);
            match stub.next_seen(limit).await {
                Some((at, Seen::Response { request_id })) if request_id == format!("req-{n}") => {
                    warm.push(at - handed)
                }
                other => return Err(unexpected(&format!("warm event {n} not answered"), other)),
            }
        }
        Ok((ready - spawned, answered - handed, rss, warm))
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// Every subject's cold starts, interleaved: round `i` spawns each subject
/// once, so a slow spell of the machine (a JVM collection in DynamoDB Local,
/// another process) spreads over all of them instead of skewing whichever
/// function happened to run then. The warm series runs in each subject's
/// last process, after the others warmed the page cache and DynamoDB Local,
/// and the bare GetItem it is compared with right after it.
async fn measure_all(
    subjects: &[Subject],
    base_env: &[(String, String)],
    db: &TestDb,
    spawns: usize,
    warm: usize,
) -> Vec<Figures> {
    let mut all: Vec<Figures> = subjects
        .iter()
        .map(|_| Figures {
            spawn_to_next: vec![],
            first_event: vec![],
            peak_rss_kib: vec![],
            warm: vec![],
            bare: Duration::ZERO,
            failure: None,
        })
        .collect();
    for i in 0..spawns {
        let last = i + 1 == spawns;
        for (subject, figures) in subjects.iter().zip(&mut all) {
            if figures.failure.is_some() {
                continue;
            }
            match cold_start(subject, base_env, if last { warm } else { 0 }).await {
                Ok((ready, first, rss, warm)) => {
                    figures.spawn_to_next.push(ready);
                    figures.first_event.push(first);
                    figures.peak_rss_kib.push(rss);
                    figures.warm.extend(warm);
                }
                Err(e) => figures.failure = Some(e),
            }
            if last {
                figures.bare = bare_get_item(db, 500).await;
            }
        }
    }
    all
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(values: &mut [Duration], p: f64) -> Duration {
    values.sort();
    values[((values.len() as f64 - 1.0) * p).round() as usize]
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// p50 of a bare GetItem on the products table: the floor a product read
/// through any implementation stands on.
async fn bare_get_item(db: &TestDb, samples: usize) -> Duration {
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        db.client
            .get_item()
            .table_name(&db.tables.products)
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
}

fn parse_args() -> Args {
    let root = system_tests::repo_root();
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let (mut bootstrap, mut event, mut name, mut env) = (None, None, None, vec![]);
    let (mut spawns, mut warm) = (20, 2000);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--bootstrap" => bootstrap = Some(in_repo(value())),
            "--event" => event = Some(in_repo(value())),
            "--name" => name = Some(value()),
            "--env" => {
                let pair = value();
                let (k, v) = pair.split_once('=').expect("--env KEY=VALUE");
                env.push((k.to_owned(), v.to_owned()));
            }
            "--spawns" => spawns = value().parse().expect("--spawns N"),
            "--warm" => warm = value().parse().expect("--warm N"),
            other => panic!("unknown argument {other}"),
        }
    }
    let read =
        |path: &PathBuf| std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let subjects = match bootstrap {
        Some(bootstrap) => vec![Subject {
            name: name.unwrap_or_else(|| bootstrap.display().to_string()),
            event: read(&event.expect("--event FILE goes with --bootstrap")),
            bootstrap,
            env,
        }],
        None => {
            let mut binaries: Vec<String> = Template::load()
                .functions()
                .into_iter()
                .map(|(_, binary)| binary)
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
        }
    };
    Args {
        subjects,
        spawns,
        warm,
    }
}

async fn run() {
    let args = parse_args();
    let db = TestDb::new().await;
    // The sample events' product, so reads and orders find it.
    db.add_product("tea-longjing", 16800, 1_000_000_000).await;
    let mut base_env: Vec<(String, String)> = db.env.clone().into_iter().collect();
    base_env.extend(
        [
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("PAYMENT_SIGNING_SECRET_PARAM", "/bench/secret"),
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
    base_env.push((
        "AWS_ENDPOINT_URL_DYNAMODB".into(),
        system_tests::required_env("DYNAMODB_ENDPOINT"),
    ));

    // DynamoDB Local's JVM speeds up over its first few thousand calls.
    bare_get_item(&db, 3000).await;

    println!(
        "| function | binary (MiB) | deployed arm64 (MiB) | spawn → first /next p50 (ms) | first event p50 (ms) | peak RSS (MiB) | warm p50 / p99 (ms) | warm p50 / bare GetItem p50 |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let figures = measure_all(&args.subjects, &base_env, &db, args.spawns, args.warm).await;
    for (subject, mut f) in args.subjects.iter().zip(figures) {
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
        if let Some(failure) = &f.failure {
            println!(
                "| {} | {size:.2} | {deployed} | failed: {} |",
                subject.name,
                failure.replace('|', "/").replace('\n', " ")
            );
            continue;
        }
        let rss = f.peak_rss_kib.iter().max().copied().unwrap_or(0) as f64 / 1024.0;
        let (w50, w99) = if f.warm.is_empty() {
            (Duration::ZERO, Duration::ZERO)
        } else {
            (percentile(&mut f.warm, 0.5), percentile(&mut f.warm, 0.99))
        };
        println!(
            "| {} | {size:.2} | {deployed} | {:.2} | {:.2} | {rss:.1} | {:.2} / {:.2} | {:.2}x |",
            subject.name,
            ms(percentile(&mut f.spawn_to_next, 0.5)),
            ms(percentile(&mut f.first_event, 0.5)),
            ms(w50),
            ms(w99),
            w50.as_secs_f64() / f.bare.as_secs_f64(),
        );
    }
    println!(
        "({} spawns per function, interleaved across functions, release build for this machine; warm: {} invocations in the last process through the stub; bare GetItem measured in-process right after each warm series)",
        args.spawns, args.warm
    );
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run());
}
