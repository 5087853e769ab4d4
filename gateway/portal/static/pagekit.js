// What every portal page's script shares: the words in the reader's language, sizes and
// dates, and the JSON API with the CSRF header. setup() once, from the page's data.

const config = { strings: {}, lang: "en", csrf: "" };

export function setup({ strings, lang, csrf }) {
  config.strings = strings && typeof strings === "object" ? strings : {};
  config.lang = lang || "en";
  config.csrf = csrf || "";
}

export class ApiError extends Error {
  constructor(status, data) {
    super(`HTTP ${status}`);
    this.status = status;
    this.data = data && typeof data === "object" ? data : {};
    this.code = typeof this.data.error === "string" ? this.data.error : "";
  }
}

export class NetworkError extends Error {}


export const $ = (id) => document.getElementById(id);


export function setText(id, text) {
  const element = $(id);
  if (element) element.textContent = text || "";
}


// The words come from the gettext catalogues (page.strings: msgid -> translation); the
// msgid is the English text. Placeholders are Python's: %(name)s, and %% for a percent sign.
function fill(template, values) {
  return String(template).replace(/%\((\w+)\)s|%%/g, (match, key) => {
    if (match === "%%") return "%";
    return Object.prototype.hasOwnProperty.call(values, key) ? String(values[key]) : match;
  });
}

export function gettext(msgid, values = {}) {
  const template = typeof config.strings[msgid] === "string" ? config.strings[msgid] : msgid;
  return fill(template, values);
}

export function formatSize(bytes) {
  const units = ["byte", "kilobyte", "megabyte", "gigabyte"];
  let value = Math.max(0, Number(bytes) || 0);
  let index = 0;
  while (value >= 1000 && index < units.length - 1) {
    value /= 1000;
    index += 1;
  }
  try {
    return new Intl.NumberFormat(config.lang, {
      style: "unit",
      unit: units[index],
      unitDisplay: index === 0 ? "long" : "short",
      maximumFractionDigits: index === 0 ? 0 : 1,
    }).format(value);
  } catch {
    return `${Math.round(value)} ${["B", "kB", "MB", "GB"][index]}`;
  }
}

export function formatDuration(seconds) {
  const whole = Math.max(1, Math.ceil(seconds));
  const [value, unit] = whole >= 120 ? [Math.ceil(whole / 60), "minute"] : [whole, "second"];
  try {
    return new Intl.NumberFormat(config.lang, { style: "unit", unit, unitDisplay: "long" }).format(value);
  } catch {
    return `${value} ${unit}s`;
  }
}

export function formatDate(value) {
  if (!value) return "";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  try {
    return new Intl.DateTimeFormat(config.lang, { dateStyle: "long", timeStyle: "short" }).format(date);
  } catch {
    return date.toLocaleString();
  }
}


export async function post(url, body) {
  const headers = { "X-CSRF-Token": config.csrf };
  let payload;
  if (body instanceof Uint8Array) {
    headers["Content-Type"] = "application/octet-stream";
    payload = body;
  } else {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body ?? {});
  }
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers,
      body: payload,
      credentials: "same-origin",
      cache: "no-store",
      redirect: "error",
    });
  } catch {
    throw new NetworkError("network");
  }
  if (!response.ok) {
    let data = {};
    try {
      data = await response.json();
    } catch {
      data = {};
    }
    throw new ApiError(response.status, data);
  }
  return response;
}

export async function postJson(url, body) {
  const response = await post(url, body);
  try {
    return await response.json();
  } catch {
    throw new ApiError(response.status, { error: "bad-response" });
  }
}
