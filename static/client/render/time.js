// Dates and times on screen. The formatters are built once: toLocale*String with options
// builds a new Intl formatter on every call, which dominated rendering a page of messages.

const CLOCK = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const FULL = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const DAY = new Intl.DateTimeFormat(undefined, { weekday: 'long', month: 'long', day: 'numeric', year: 'numeric' });

export function timeOf(ts) {
  return new Date(parseFloat(ts) * 1000);
}

// A number that is the same for two timestamps on the same local day.
export function dayKey(ts) {
  const date = timeOf(ts);
  return date.getFullYear() * 10000 + date.getMonth() * 100 + date.getDate();
}

export const clockTime = (date) => CLOCK.format(date);
export const fullTime = (date) => FULL.format(date);
export const dayLabel = (date) => DAY.format(date);
