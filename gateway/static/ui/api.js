// The Management API, as the UI uses it: the admin token from this tab's sessionStorage only
// (never a URL, never localStorage), JSON in and out, errors as ApiError with the field named.

const TOKEN_KEY = "gateway.adminToken";

export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field || null;
  }
}

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

let onUnauthorized = () => {};
export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

async function errorOf(resp) {
  let body = null;
  try {
    body = await resp.json();
  } catch {
    // not JSON: say what the status says
  }
  const error = body && body.error;
  if (error) return new ApiError(resp.status, error.code, error.message, error.field);
  return new ApiError(resp.status, "http_error", `the gateway answered HTTP ${resp.status}`);
}

function headers(secret, extra = {}) {
  return { Authorization: `Bearer ${secret}`, ...extra };
}

// A call with an explicit token: sign-in tries one before keeping it.
export async function request(method, path, body, secret = token.get()) {
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers: headers(secret || "", body === undefined ? {} : { "Content-Type": "application/json" }),
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "network", "the gateway cannot be reached");
  }
  if (resp.status === 401 && secret === token.get()) onUnauthorized();
  if (!resp.ok) throw await errorOf(resp);
  if (resp.status === 204) return null;
  return resp.json();
}

export const api = {
  get: (path) => request("GET", path),
  post: (path, body) => request("POST", path, body),
  patch: (path, body) => request("PATCH", path, body),
  del: (path, body) => request("DELETE", path, body),
};

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

// Server-Sent Events read with fetch (EventSource cannot send the Authorization header).
// Calls onEvent(name, data, id) per event; resolves when the stream ends, rejects on failure.
export async function readStream(path, onEvent, signal) {
  const resp = await fetch(path, {
    headers: headers(token.get() || "", { Accept: "text/event-stream" }),
    cache: "no-store",
    signal,
  });
  if (resp.status === 401) onUnauthorized();
  if (!resp.ok) throw await errorOf(resp);
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      let id = null;
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("id: ")) id = Number(line.slice(4));
        else if (line.startsWith("data: ")) data.push(line.slice(6));
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")), id);
    }
  }
}
