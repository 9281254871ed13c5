//! The floor for `scripts/bench lambda`: a `lambda_http` function that does
//! nothing (no tracing, no SDK, no tables) on the same single-threaded runtime
//! as ours. What a function measures above it is its own init and work; what
//! it measures at it is the cost of being a process on this machine.

use lambda_http::{Body, Error, Request, Response, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    run(service_fn(|_: Request| async {
        Ok::<_, Error>(Response::new(Body::Text("{}".into())))
    }))
    .await
}
