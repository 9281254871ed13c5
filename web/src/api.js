// The HTTP API from the browser: every call carries the access token, writes
// that take an Idempotency-Key carry one, and an error answer becomes an
// ApiError holding the API's own message (shown as it is).

export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

export class Api {
  #base;
  #auth;

  constructor(config, auth) {
    this.#base = config.apiUrl.replace(/\/$/, "");
    this.#auth = auth;
  }

  async request(method, path, { body, idempotencyKey, query } = {}) {
    const headers = { Accept: "application/json" };
    const token = await this.#auth.accessToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
    let url = this.#base + path;
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query ?? {})) {
      if (value !== undefined && value !== null && value !== "") params.set(key, value);
    }
    if ([...params].length) url += `?${params}`;
    let response;
    try {
      // "no-cache": catalog answers may be kept 5 s (Cache-Control), but a
      // page must show a change it just made; the browser revalidates with
      // the ETag and gets a 304 when nothing changed.
      response = await fetch(url, { method, headers, cache: "no-cache", body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (err) {
      throw new ApiError(0, "NETWORK", `The shop could not be reached (${err.message}).`);
    }
    const text = await response.text();
    let payload = null;
    try { payload = text ? JSON.parse(text) : null; } catch { payload = null; }
    if (response.ok) return payload;
    // The functions answer {error: {code, message}}; API Gateway itself {message}.
    const code = payload?.error?.code ?? `HTTP_${response.status}`;
    const message = payload?.error?.message ?? payload?.message ?? (text || response.statusText);
    const retryAfter = response.headers.get("Retry-After");
    throw new ApiError(response.status, code, message, retryAfter === null ? null : Number(retryAfter));
  }

  get(path, query) { return this.request("GET", path, { query }); }
  post(path, body, idempotencyKey) { return this.request("POST", path, { body, idempotencyKey }); }
  put(path, body) { return this.request("PUT", path, { body }); }
}
