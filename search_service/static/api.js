// The page's link to the JSON API: requests with the API key (asked once, kept for the tab) and
// thumbnails loaded lazily through the same authenticated fetch.

const KEY = "framesearch.apiKey";

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
  }
}

function headers(extra = {}) {
  const key = sessionStorage.getItem(KEY);
  return key ? { ...extra, "X-API-Key": key } : extra;
}

// Asks for the API key in the page's dialog; resolves once the user saved one.
function askKey(message) {
  const dialog = document.getElementById("keydialog");
  document.getElementById("keyerror").textContent = message || "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      const value = document.getElementById("apikey").value.trim();
      if (value) sessionStorage.setItem(KEY, value);
      resolve(Boolean(value));
    }, { once: true });
    if (!dialog.open) dialog.showModal();
  });
}

// fetch() with the key; on 401 asks for a key and retries once per key entered.
export async function api(path, options = {}) {
  for (;;) {
    const response = await fetch(path, { ...options, headers: headers(options.headers) });
    if (response.status === 401) {
      const had = sessionStorage.getItem(KEY);
      sessionStorage.removeItem(KEY);
      if (await askKey(had ? "That key was refused." : "")) continue;
    }
    return response;
  }
}

export async function apiJson(path, options = {}) {
  const response = await api(path, options);
  let body = null;
  try { body = await response.json(); } catch { /* not JSON: the status says enough */ }
  if (!response.ok) {
    let detail = body && body.detail !== undefined ? body.detail : response.statusText;
    if (Array.isArray(detail)) detail = detail.map((e) => `${(e.loc || []).slice(1).join(".")}: ${e.msg}`).join("; ");
    throw new ApiError(response.status, detail);
  }
  return body;
}

// Thumbnails: fetched with the key (an <img src> cannot send headers) when they come into view;
// the browser's HTTP cache keeps them (immutable URLs), object URLs are kept per page.
const objectUrls = new Map();

// Shows the frame at ``url`` in ``img`` (fetched with the key, cached per page).
export async function setImage(img, url) {
  try {
    if (!objectUrls.has(url)) {
      const response = await api(url);
      if (!response.ok) throw new ApiError(response.status, response.statusText);
      objectUrls.set(url, URL.createObjectURL(await response.blob()));
    }
    img.src = objectUrls.get(url);
  } catch (error) {
    img.alt = `frame unavailable (${error.status || "error"})`;
    img.classList.add("broken");
  }
}

function load(img) {
  const url = img.dataset.src;
  if (!url) return;
  delete img.dataset.src;
  setImage(img, url);
}

const observer = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    if (entry.isIntersecting) { observer.unobserve(entry.target); load(entry.target); }
  }
}, { rootMargin: "300px" });

// An <img> that loads ``url`` once it comes near the viewport.
export function lazyImage(url, title = "") {
  const img = document.createElement("img");
  img.alt = "";  // no broken-image text while it loads; the card says which frame it is
  img.title = title;
  img.dataset.src = url;
  observer.observe(img);
  return img;
}
