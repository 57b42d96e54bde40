// The session Web API: every call is a POST to /api/<method> with the CSRF header and the
// team of this page (a person in two teams may have both open, one in each tab; the server
// would otherwise take the team the session opened last).

const csrfToken = () => document.querySelector('meta[name="csrf-token"]')?.content || '';
const pageTeam = () => document.querySelector('meta[name="chat-team"]')?.content || '';

// Errors worth trying again later (the request may not have reached the server, or it
// was refused for now); anything else is final for that request.
const RETRYABLE = new Set(['network', 'ratelimited', 'service_unavailable', 'internal_error',
  'team_is_moving', 'fatal_error']);

export class ApiError extends Error {
  // retryAfter: seconds, from the answer's Retry-After (a rate limit, an outage), or null.
  constructor(code, status = 0, retryAfter = null) {
    super(code);
    this.code = code;
    this.status = status;
    this.retryAfter = retryAfter;
  }

  get retryable() {
    return RETRYABLE.has(this.code) || this.status >= 500;
  }
}

async function send(method, init) {
  let response;
  try {
    response = await fetch(`/api/${method}`, {
      method: 'POST',
      credentials: 'same-origin',
      ...init,
      headers: { 'X-CSRFToken': csrfToken(), 'X-Chat-Team': pageTeam(), ...(init.headers || {}) },
    });
  } catch (error) {
    throw new ApiError('network');
  }
  let body;
  try {
    body = await response.json();
  } catch (error) {
    throw new ApiError(response.status >= 500 ? 'internal_error' : 'invalid_response', response.status);
  }
  if (!body.ok) {
    const retryAfter = Number(response.headers.get('Retry-After')) || null;
    throw new ApiError(body.error || 'unknown_error', response.status, retryAfter);
  }
  return body;
}

export function call(method, args = {}) {
  return send(method, {
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(args),
  });
}

export function upload(method, formData) {
  return send(method, { body: formData });
}
