//! [`Client`] and its builder: base URL, bearer token, extra headers, timeouts, and one method
//! per route.

use crate::error::{ClientError, Result};
use crate::sse::{decode_stream, EventStream};
use crate::types::{
    ChatCompletion, ChatCompletionChunk, ChatRequest, GenerateRequest, GenerateResponse, Info,
    InvocationsRequest, InvocationsResponse, StreamResponse,
};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// A client of one tgi-rs / TGI endpoint. Cheap to clone (the connection pool is shared).
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
}

/// Configures a [`Client`]; see [`Client::builder`].
#[derive(Debug)]
pub struct ClientBuilder {
    base_url: String,
    token: Option<String>,
    headers: Vec<(String, String)>,
    timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
}

impl ClientBuilder {
    /// Sends `Authorization: Bearer <token>` (the server's `--api-key`, or a hub token).
    pub fn bearer_token(mut self, token: impl Into<String>) -> ClientBuilder {
        self.token = Some(token.into());
        self
    }

    /// Adds a header to every request.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> ClientBuilder {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Limits each whole request, streams included (default: none, since streams can be long).
    pub fn timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.timeout = Some(timeout);
        self
    }

    /// Limits connection setup (default: 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Builds the client; fails on an invalid URL, header or TLS setup.
    pub fn build(self) -> Result<Client> {
        let base_url = self.base_url.trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&base_url)
            .map_err(|e| ClientError::Config(format!("base URL {base_url:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ClientError::Config(format!(
                "base URL {base_url:?}: scheme must be http or https"
            )));
        }
        let mut headers = HeaderMap::new();
        if let Some(token) = &self.token {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| ClientError::Config(format!("bearer token: {e}")))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        for (name, value) in &self.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| ClientError::Config(format!("header name {name:?}: {e}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| ClientError::Config(format!("header {name}: {e}")))?;
            headers.insert(name, value);
        }
        let mut http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(self.connect_timeout.unwrap_or(Duration::from_secs(10)));
        if let Some(timeout) = self.timeout {
            http = http.timeout(timeout);
        }
        let http = http
            .build()
            .map_err(|e| ClientError::Config(format!("HTTP client: {e}")))?;
        Ok(Client { http, base_url })
    }
}

impl Client {
    /// A client of `base_url` (e.g. `http://127.0.0.1:3000`) with default settings.
    pub fn new(base_url: impl Into<String>) -> Result<Client> {
        Client::builder(base_url).build()
    }

    /// A builder for a client of `base_url`.
    pub fn builder(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.into(),
            token: None,
            headers: Vec::new(),
            timeout: None,
            connect_timeout: None,
        }
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// `POST /generate`: the whole answer at once.
    pub async fn generate(&self, req: &GenerateRequest) -> Result<GenerateResponse> {
        self.post_json("/generate", req).await
    }

    /// `POST /generate_stream`: one item per token; the last carries `generated_text`. An error
    /// event from the server becomes the stream's last item, as an `Err`.
    pub async fn generate_stream(
        &self,
        req: &GenerateRequest,
    ) -> Result<EventStream<StreamResponse>> {
        let resp = self.post_stream("/generate_stream", req).await?;
        Ok(decode_stream(Box::pin(resp.bytes_stream())))
    }

    /// `POST /v1/chat/completions` with `stream: false`.
    pub async fn chat(&self, req: &ChatRequest) -> Result<ChatCompletion> {
        let mut req = req.clone();
        req.stream = false;
        self.post_json("/v1/chat/completions", &req).await
    }

    /// `POST /v1/chat/completions` with `stream: true`: one chunk per token (plus a usage
    /// chunk when `stream_options.include_usage`), ending at `data: [DONE]`.
    pub async fn chat_stream(&self, req: &ChatRequest) -> Result<EventStream<ChatCompletionChunk>> {
        let mut req = req.clone();
        req.stream = true;
        let resp = self.post_stream("/v1/chat/completions", &req).await?;
        Ok(decode_stream(Box::pin(resp.bytes_stream())))
    }

    /// `POST /invocations`, SageMaker's single route.
    pub async fn invocations(&self, payload: &InvocationsRequest) -> Result<InvocationsResponse> {
        self.post_json("/invocations", payload).await
    }

    /// `GET /health`: `Ok(())` when the server and its shards are healthy, otherwise
    /// [`ClientError::Unavailable`] (or a transport error if nothing answers).
    pub async fn health(&self) -> Result<()> {
        let resp = self.http.get(self.url("/health")).send().await?;
        check(resp).await.map(|_| ())
    }

    /// `GET /info`: the served model and the server's limits.
    pub async fn info(&self) -> Result<Info> {
        let resp = self.http.get(self.url("/info")).send().await?;
        decode(check(resp).await?).await
    }

    async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        let resp = self.http.post(self.url(path)).json(body).send().await?;
        decode(check(resp).await?).await
    }

    async fn post_stream<B: Serialize>(&self, path: &str, body: &B) -> Result<reqwest::Response> {
        let resp = self
            .http
            .post(self.url(path))
            .header(ACCEPT, "text/event-stream")
            .json(body)
            .send()
            .await?;
        check(resp).await
    }
}

/// Passes a success answer through; turns any other into the matching [`ClientError`].
async fn check(resp: reqwest::Response) -> Result<reqwest::Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    Err(ClientError::from_response(status.as_u16(), &body))
}

/// Reads and decodes a JSON body, keeping the text on failure.
async fn decode<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T> {
    let body = resp.text().await?;
    serde_json::from_str(&body).map_err(|e| ClientError::Decode {
        message: e.to_string(),
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_validates_configuration() {
        let c = Client::new("http://127.0.0.1:3000/").unwrap();
        assert_eq!(c.base_url(), "http://127.0.0.1:3000");
        assert!(matches!(
            Client::new("not a url"),
            Err(ClientError::Config(_))
        ));
        assert!(matches!(
            Client::new("ftp://host"),
            Err(ClientError::Config(_))
        ));
        assert!(matches!(
            Client::builder("http://h").header("bad name", "v").build(),
            Err(ClientError::Config(_))
        ));
        assert!(matches!(
            Client::builder("http://h").bearer_token("a\nb").build(),
            Err(ClientError::Config(_))
        ));
        assert!(Client::builder("https://h")
            .bearer_token("t")
            .header("x-request-id", "1")
            .timeout(Duration::from_secs(5))
            .build()
            .is_ok());
    }
}
