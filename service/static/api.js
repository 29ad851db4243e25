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

// A request answered as progress lines (application/x-ndjson): `onEvent` sees each parsed line
// as it arrives. An error line, or an error answer before the stream begins, throws an ApiError;
// aborting `options.signal` throws the browser's AbortError, which callers treat as a cancel.
export async function requestEvents(path, options, onEvent) {
  let response;
  try {
    response = await fetch(path, { headers: { Accept: "application/x-ndjson" }, ...options });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(
      "Could not reach the service (network error). Check that it is running, then try again.",
      { code: "NETWORK_ERROR" },
    );
  }
  if (!response.ok || !response.headers.get("Content-Type")?.startsWith("application/x-ndjson")) {
    let body = null;
    try {
      body = await response.json();
    } catch {
      // Not JSON either: the status line is all there is to say.
    }
    if (!response.ok) throw errorFrom(response, body);
    return body; // a server that does not stream answers the plain result
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = "";
  let last = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    pending += value;
    const lines = pending.split("\n");
    pending = lines.pop();
    for (const line of lines.filter((l) => l.trim())) {
      last = JSON.parse(line);
      if (last.event === "error") throw errorFrom({ status: last.status, statusText: "", headers: new Headers() }, last);
      onEvent(last);
    }
  }
  if (last?.event !== "result") {
    throw new ApiError("The comparison's answer was cut off before its result. Try again.", { code: "STREAM_CUT" });
  }
  return last;
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
