// Calls to the service; every failure becomes an ApiError with a message fit for people.

export class ApiError extends Error {
  constructor(message, { code = "ERROR", status = 0, requestId = null } = {}) {
    super(message);
    this.code = code;
    this.status = status;
    this.requestId = requestId;
  }
}

export async function requestJson(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { headers: { Accept: "application/json" }, ...options });
  } catch {
    throw new ApiError(
      "Could not reach the service (network error). Check that it is running, then try again.",
      { code: "NETWORK_ERROR" },
    );
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    // A proxy's HTML error page or an empty body: fall back to the status line below.
  }
  if (!response.ok) throw errorFrom(response, body);
  return body;
}

function errorFrom(response, body) {
  const error = body && typeof body.error === "object" ? body.error : null;
  let message = error?.message || `The service answered HTTP ${response.status} ${response.statusText}.`;
  const retryAfter = response.headers.get("Retry-After");
  if (response.status === 503 && retryAfter) message += ` Try again in ${retryAfter} s.`;
  return new ApiError(message, {
    code: error?.code || `HTTP_${response.status}`,
    status: response.status,
    requestId: error?.request_id ?? response.headers.get("X-Request-ID"),
  });
}

export function uploadForm(file) {
  const form = new FormData();
  form.append("file", file, file.name || "pasted-image");
  return form;
}
