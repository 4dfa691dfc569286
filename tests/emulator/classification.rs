//! How `RealBackend` classifies what comes back over real HTTP: each error code and status the
//! service (or something between it and the client) may answer, through the real
//! `aws-sdk-lambda` client, against a canned responder on loopback.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::*;
use axum::body::Body;
use axum::http::{Response, StatusCode};
use checkpoint_batcher::{
    BatcherConfig, CheckpointBatcher, DurableBackend, ErrorKind, FailureScope, RealBackend,
};

/// One canned answer: status, `X-Amzn-ErrorType` (if any), extra headers, body.
#[derive(Clone, Debug)]
struct Canned {
    status: u16,
    code: Option<&'static str>,
    headers: Vec<(&'static str, &'static str)>,
    body: String,
}

impl Canned {
    fn error(status: u16, code: Option<&'static str>, message: &str) -> Self {
        Self {
            status,
            code,
            headers: Vec::new(),
            body: format!(r#"{{"Type":"User","message":"{message}"}}"#),
        }
    }

    fn ok(token: &str) -> Self {
        Self {
            status: 200,
            code: None,
            headers: Vec::new(),
            body: format!(
                r#"{{"CheckpointToken":"{token}","NewExecutionState":{{"Operations":[]}}}}"#
            ),
        }
    }

    fn with_header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }
}

/// Serves the queued answers in order, one per request, whatever the request; counts requests.
#[derive(Clone, Default)]
struct Responder {
    queue: Arc<Mutex<VecDeque<Canned>>>,
    requests: Arc<Mutex<u32>>,
}

impl Responder {
    async fn start(&self) -> String {
        let responder = self.clone();
        let app = axum::Router::new().fallback(move || {
            let responder = responder.clone();
            async move {
                *responder.requests.lock().unwrap() += 1;
                let canned = responder
                    .queue
                    .lock()
                    .unwrap()
                    .pop_front()
                    .unwrap_or_else(|| Canned::error(500, None, "nothing canned"));
                let mut response = Response::builder()
                    .status(StatusCode::from_u16(canned.status).unwrap())
                    .header("content-type", "application/json");
                if let Some(code) = canned.code {
                    response = response.header("x-amzn-errortype", code);
                }
                for (name, value) in canned.headers {
                    response = response.header(name, value);
                }
                response.body(Body::from(canned.body)).unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    fn push(&self, canned: Canned) {
        self.queue.lock().unwrap().push_back(canned);
    }

    fn requests(&self) -> u32 {
        *self.requests.lock().unwrap()
    }
}

fn client_for(endpoint: &str) -> aws_sdk_lambda::Client {
    use aws_sdk_lambda::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_lambda::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKID", "secret", None, None, "test"))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_lambda::Client::from_conf(config)
}

/// One checkpoint attempt through `RealBackend` against `canned`.
async fn classify(canned: Canned) -> checkpoint_batcher::BackendError {
    let responder = Responder::default();
    let endpoint = responder.start().await;
    responder.push(canned);
    let backend = RealBackend::new(client_for(&endpoint));
    let error = backend
        .checkpoint(ARN, "t0", vec![start("a")], Some("client-token"))
        .await
        .expect_err("the canned answer is an error");
    assert_eq!(
        responder.requests(),
        1,
        "one attempt: the SDK's retries are off"
    );
    error
}

#[tokio::test]
async fn a_gateway_error_without_a_code_is_transient() {
    for status in [502, 503] {
        let canned = Canned {
            status,
            code: None,
            headers: Vec::new(),
            body: "<html>Bad Gateway</html>".to_owned(),
        };
        let error = classify(canned).await;
        assert_eq!(
            error.kind(),
            ErrorKind::Transient,
            "a {status} without an error code comes from a proxy, not the service's KMS: {error}"
        );
    }
}

#[tokio::test]
async fn kms_errors_carry_their_code_and_fail_the_execution() {
    for code in [
        "KMSAccessDeniedException",
        "KMSDisabledException",
        "KMSInvalidStateException",
        "KMSNotFoundException",
    ] {
        let error = classify(Canned::error(502, Some(code), "kms says no")).await;
        assert_eq!(error.kind(), ErrorKind::Kms, "{code}: {error}");
        assert_eq!(error.kind().scope(), FailureScope::Execution);
    }
}

#[tokio::test]
async fn every_throttling_code_is_throttled_whatever_its_status() {
    for (status, code) in [
        (429, "TooManyRequestsException"),
        (400, "TooManyRequestsException"),
        (400, "ThrottlingException"),
        (429, "ThrottlingException"),
        (400, "Throttling"),
        (400, "RequestLimitExceeded"),
        (503, "RequestLimitExceeded"),
    ] {
        let error = classify(Canned::error(status, Some(code), "slow down")).await;
        assert_eq!(
            error.kind(),
            ErrorKind::Throttled,
            "{code} with {status} is throttling: {error}"
        );
    }
}

#[tokio::test]
async fn refused_credentials_fail_the_invocation_not_the_execution() {
    for (status, code) in [
        (400, "ExpiredTokenException"),
        (403, "UnrecognizedClientException"),
        (403, "InvalidSignatureException"),
        (403, "SignatureDoesNotMatch"),
        (403, "AccessDeniedException"),
    ] {
        let error = classify(Canned::error(status, Some(code), "who are you")).await;
        assert_eq!(error.kind(), ErrorKind::Credentials, "{code}: {error}");
        assert_eq!(
            error.kind().scope(),
            FailureScope::Invocation,
            "{code}: the request is fine; the execution resumes once the caller is fixed"
        );
        assert!(!error.kind().is_retryable(), "{code} is not retried");
    }
}

#[tokio::test]
async fn a_client_without_credentials_fails_the_invocation() {
    use aws_sdk_lambda::config::{BehaviorVersion, Region};
    let responder = Responder::default();
    let endpoint = responder.start().await;
    let config = aws_sdk_lambda::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&endpoint)
        .build();
    let backend = RealBackend::new(aws_sdk_lambda::Client::from_conf(config));
    let error = backend
        .checkpoint(ARN, "t0", vec![start("a")], Some("client-token"))
        .await
        .expect_err("nothing can sign the request");
    // The SDK reports a client built with no credentials provider at all through a private
    // error type, so this one is told apart only by its scope: retried as transient, then the
    // invocation fails. A provider that fails to load is named (the next test).
    assert_eq!(
        error.kind().scope(),
        FailureScope::Invocation,
        "a client that cannot sign is misconfigured; the request is fine: {error}"
    );
    assert_eq!(responder.requests(), 0, "nothing was sent");
}

#[tokio::test]
async fn a_client_without_a_region_fails_the_invocation() {
    use aws_sdk_lambda::config::{BehaviorVersion, Credentials};
    let config = aws_sdk_lambda::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .credentials_provider(Credentials::new("AKID", "secret", None, None, "test"))
        .build();
    let backend = RealBackend::new(aws_sdk_lambda::Client::from_conf(config));
    let error = backend
        .checkpoint(ARN, "t0", vec![start("a")], Some("client-token"))
        .await
        .expect_err("no endpoint can be resolved");
    assert_eq!(error.kind(), ErrorKind::Credentials, "{error}");
}

#[tokio::test]
async fn a_retry_after_of_an_hour_waits_no_longer_than_max_backoff() {
    let responder = Responder::default();
    let endpoint = responder.start().await;
    responder.push(
        Canned::error(429, Some("TooManyRequestsException"), "slow down")
            .with_header("retry-after", "3600"),
    );
    responder.push(Canned::ok("t1"));
    let mut config = BatcherConfig::default();
    config.retry.initial_backoff = Duration::from_millis(10);
    config.retry.max_backoff = Duration::from_millis(200);
    let backend = Arc::new(RealBackend::new(client_for(&endpoint)));
    let batcher = CheckpointBatcher::spawn(backend, ARN, "t0", config).unwrap();
    let began = Instant::now();
    let ack = within(Duration::from_secs(30), batcher.checkpoint(start("a")))
        .await
        .expect("the retry succeeds");
    let waited = began.elapsed();
    assert_eq!(ack.checkpoint_token(), Some("t1"));
    assert_eq!(responder.requests(), 2);
    assert!(
        waited >= Duration::from_millis(200),
        "the Retry-After is honoured up to max_backoff: waited {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(10),
        "never an hour: waited {waited:?}"
    );
}

#[tokio::test]
async fn credentials_that_fail_to_load_fail_the_invocation() {
    use aws_credential_types::provider::error::CredentialsError;
    use aws_credential_types::provider::{ProvideCredentials, future};
    use aws_sdk_lambda::config::{BehaviorVersion, Region};

    #[derive(Debug)]
    struct Expired;
    impl ProvideCredentials for Expired {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            future::ProvideCredentials::ready(Err(CredentialsError::provider_error(
                "the session expired",
            )))
        }
    }

    let responder = Responder::default();
    let endpoint = responder.start().await;
    let config = aws_sdk_lambda::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Expired)
        .endpoint_url(&endpoint)
        .build();
    let backend = RealBackend::new(aws_sdk_lambda::Client::from_conf(config));
    let error = backend
        .checkpoint(ARN, "t0", vec![start("a")], Some("client-token"))
        .await
        .expect_err("the credentials cannot be loaded");
    assert_eq!(error.kind(), ErrorKind::Credentials, "{error}");
    assert_eq!(responder.requests(), 0, "nothing was sent");
}
