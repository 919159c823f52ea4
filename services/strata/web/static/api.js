// Calls to /api with the session's CSRF token; errors carry the HTTP status and message.
export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code || "";
  }
}

export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

async function send(path, init, offline) {
  let response;
  try {
    response = await fetch(path, { ...init, credentials: "same-origin", cache: "no-store" });
  } catch (err) {
    throw new ApiError(0, offline);
  }
  if (response.status === 204) return null;
  let data = null;
  try { data = await response.json(); } catch (err) { data = null; }
  if (!response.ok) {
    if (response.status === 401 && !path.startsWith("/api/session")) {
      window.location.assign("/signin");
    }
    const message = (data && data.error) || `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message, data && data.code);
  }
  return data;
}

export async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRF-Token"] = csrfToken();
  return send(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  }, "the network is down: your work is kept and sent when it is back");
}

// A file (in a FormData) posted as multipart/form-data; the browser sets the boundary.
export async function upload(path, form) {
  return send(path, {
    method: "POST",
    headers: { "Accept": "application/json", "X-CSRF-Token": csrfToken() },
    body: form,
  }, "the network is down: the file was not sent; try again when it is back");
}
