// Which image URLs the client loads: only https: from another origin. An image of this
// origin is a GET its reader's browser sends with the session cookie: a message, a preview
// or an emoji must not make every reader call this server (which refuses cookie calls
// that are not POST with the CSRF token; this does not lean on that alone).
export function safeImageUrl(url) {
  if (typeof url !== 'string') return null;
  let parsed;
  try {
    parsed = new URL(url, window.location.href);
  } catch {
    return null;
  }
  if (parsed.protocol !== 'https:' || parsed.origin === window.location.origin) return null;
  return parsed.href;
}
