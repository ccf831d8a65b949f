// The playground: the form is built from the gateway's catalog (the data validation reads), requests go to the
// gateway with the key the user typed (kept in sessionStorage only), and every answer's headers are shown.
"use strict";

const $ = (id) => document.getElementById(id);
const STORE = window.sessionStorage;
const state = { catalog: null, last: null, lang: "curl", seed: null, objectUrls: [] };

// Field order and how each is shown; which fields exist, their defaults, bounds and choices come from the catalog.
const LAYOUT = [
  ["prompt", "textarea", "wide"], ["negative_prompt", "textarea", "wide"],
  ["aspect_ratio", "select"], ["width", "number"], ["height", "number"],
  ["steps", "number"], ["guidance_scale", "number"], ["seed", "seed"],
  ["sampler", "select"], ["scheduler", "select"], ["batch_size", "number"],
  ["image_format", "select"], ["image_quality", "number"],
];
const LABELS = {
  prompt: "Prompt", negative_prompt: "Negative prompt", aspect_ratio: "Aspect ratio", width: "Width",
  height: "Height", steps: "Steps", guidance_scale: "Guidance scale", seed: "Seed (-1: random)",
  sampler: "Sampler", scheduler: "Scheduler", batch_size: "Batch size", image_format: "Image format",
  image_quality: "Image quality",
};
// OpenAI's parameter names for Segmind's fields (errors name OpenAI's).
const OPENAI_PARAMS = { size: "width", n: "batch_size", output_format: "image_format", output_compression: "image_quality" };

function gatewayBase() {
  let base = $("gateway").value.trim() || defaultGateway();
  if (!base.endsWith("/")) base += "/";
  return base;
}

function defaultGateway() {
  return new URL(".", window.location.href).href;
}

function url(path) {
  return new URL(path.replace(/^\//, ""), gatewayBase()).href;
}

// ---- the form, from the catalog ----

async function loadCatalog() {
  $("fields").textContent = "Loading the catalog…";
  try {
    const answer = await fetch(url("playground/catalog.json"));
    if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
    state.catalog = await answer.json();
  } catch (error) {
    $("fields").textContent = `Could not load the catalog from ${gatewayBase()} (${error.message}).`;
    return;
  }
  buildForm(state.catalog);
}

function buildForm(catalog) {
  const box = $("fields");
  box.replaceChildren();
  for (const [name, kind, wide] of LAYOUT) {
    const field = document.createElement("div");
    field.className = wide ? "field wide" : "field";
    const label = document.createElement("label");
    label.htmlFor = `f-${name}`;
    label.textContent = LABELS[name] || name;
    field.append(label);
    const control = makeControl(name, kind, catalog);
    const hint = hintOf(name, catalog);
    if (hint) {
      const small = document.createElement("small");
      small.id = `hint-${name}`;
      small.textContent = hint;
      field.append(control.wrapper || control.input, small);
    } else {
      field.append(control.wrapper || control.input);
    }
    const error = document.createElement("span");
    error.className = "error";
    error.id = `err-${name}`;
    error.setAttribute("role", "alert");
    field.append(error);
    control.input.setAttribute("aria-describedby", [hint ? `hint-${name}` : "", `err-${name}`].join(" ").trim());
    box.append(field);
  }
  $("f-aspect_ratio").addEventListener("change", applyAspectRatio);
  applyAspectRatio();
}

function makeControl(name, kind, catalog) {
  const defaults = catalog.defaults;
  let input;
  if (kind === "textarea") {
    input = document.createElement("textarea");
    input.maxLength = catalog.max_lengths[name];
    input.value = name === "prompt" ? "a cat in a spacesuit, studio photo" : defaults[name] ?? "";
    if (name === "prompt") input.required = true;
  } else if (kind === "select") {
    input = document.createElement("select");
    for (const value of catalog.enums[name]) {
      const option = document.createElement("option");
      option.value = value;
      const size = catalog.aspect_ratios[value];
      option.textContent = name === "aspect_ratio" && size ? `${value} (${size[0]}×${size[1]})` : value;
      input.append(option);
    }
    input.value = defaults[name];
  } else {
    input = document.createElement("input");
    input.type = "number";
    input.inputMode = name === "guidance_scale" ? "decimal" : "numeric";
    const [low, high] = catalog.ranges[name];
    input.min = low;
    input.max = high;
    input.step = name === "guidance_scale" ? "0.1" : "1";
    // A fresh seed on each visit: a newcomer's first Generate is a MISS (not the README's sample, cached already),
    // and pressing it again is a HIT.
    input.value = kind === "seed" ? freshSeed(high) : defaults[name];
  }
  input.id = `f-${name}`;
  input.name = name;
  if (kind !== "seed") return { input };
  const wrapper = document.createElement("div");
  wrapper.className = "inline";
  const random = document.createElement("button");
  random.type = "button";
  random.textContent = "Random";
  random.title = "Seed -1: a random seed (never read from the cache)";
  random.addEventListener("click", () => { input.value = "-1"; });
  wrapper.append(input, random);
  return { input, wrapper };
}

function freshSeed(highest) {
  return crypto.getRandomValues(new Uint32Array(1))[0] % (highest + 1);
}

function hintOf(name, catalog) {
  const range = catalog.ranges[name];
  const length = catalog.max_lengths[name];
  if (name === "seed") return `-1 (random, never cached) or 0 to ${range[1]}; a new one on each visit`;
  if (range) return `${range[0]} to ${range[1]}, default ${catalog.defaults[name]}`;
  if (length) return `up to ${length} characters`;
  return "";
}

function applyAspectRatio() {
  const ratio = $("f-aspect_ratio").value;
  const size = state.catalog.aspect_ratios[ratio];
  for (const [side, index] of [["width", 0], ["height", 1]]) {
    const input = $(`f-${side}`);
    input.disabled = Boolean(size);
    if (size) input.value = size[index];
  }
}

// ---- the request ----

function readFields() {
  const catalog = state.catalog;
  const body = {};
  for (const [name, kind] of LAYOUT) {
    const input = $(`f-${name}`);
    if (input.disabled) continue;
    let value = input.value;
    if (kind === "number" || kind === "seed") {
      if (value.trim() === "") continue;
      value = Number(value);
    }
    // The prompt and the seed always; other fields only when they differ from the default (a shorter request).
    if (name === "prompt" || name === "seed" || value !== catalog.defaults[name]) body[name] = value;
  }
  return body;
}

function buildRequest(route, fields, key) {
  const catalog = state.catalog;
  if (route === "openai") {
    const body = { model: catalog.openai.model, prompt: fields.prompt };
    const width = Number($("f-width").value);
    const height = Number($("f-height").value);
    if (fields.width !== undefined || fields.height !== undefined || fields.aspect_ratio !== undefined) {
      body.size = `${width}x${height}`;
    }
    if (fields.batch_size !== undefined) body.n = fields.batch_size;
    if (fields.image_format !== undefined) body.output_format = fields.image_format;
    if (fields.image_quality !== undefined) body.output_compression = fields.image_quality;
    for (const name of catalog.openai.segmind_fields) if (fields[name] !== undefined) body[name] = fields[name];
    body.response_format = "b64_json";
    return { method: "POST", path: catalog.routes.openai, headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" }, body };
  }
  const body = { ...fields };
  if (route === "v1") body.base64 = true;
  const path = route === "v2" ? catalog.routes.v2 : catalog.routes.v1;
  return { method: "POST", path, headers: { "x-api-key": key, "Content-Type": "application/json" }, body };
}

async function generate(event) {
  event.preventDefault();
  if (!state.catalog) return;
  clearErrors();
  const key = $("key").value.trim();
  if (!key) {
    showFieldError("key", "Type your gateway key first.");
    $("key").focus();
    return;
  }
  STORE.setItem("playground.key", key);
  const route = $("route").value;
  const request = buildRequest(route, readFields(), key);
  state.last = { route, request };
  renderCode();
  resetResult();
  $("submit").disabled = true;
  const started = performance.now();
  try {
    if (route === "v2") await runV2(request, started);
    else await runSync(route, request, started);
  } catch (error) {
    setStatus("Failed.");
    $("form-error").textContent = `The request failed before an answer could be read: ${error.message}. ` +
      "A network error, or the gateway refused this page's origin for this key (CORS).";
  } finally {
    $("submit").disabled = false;
  }
}

async function send(request, extraHeaders = {}) {
  return fetch(url(request.path), {
    method: request.method,
    headers: { ...request.headers, ...extraHeaders },
    body: request.body === undefined ? undefined : JSON.stringify(request.body),
  });
}

async function runSync(route, request, started) {
  setStatus("Generating…");
  const answer = await send(request);
  const payload = await readJson(answer);
  showHeaders(answer, started);
  if (!answer.ok) return showError(route, answer, payload);
  setStatus(`Done: HTTP ${answer.status}.`);
  if (route === "openai") {
    showImages((payload.data || []).map((item) => item.b64_json ? { b64: item.b64_json } : { url: item.url }));
  } else if (payload.images && payload.images.length && typeof payload.images[0] === "object") {
    showImages(payload.images.map((item) => ({ url: item.url })));  // URL mode (too large to inline)
  } else {
    showImages((payload.images || [payload.image]).map((b64) => ({ b64 })));
  }
}

async function runV2(request, started) {
  setStatus("Submitting…");
  const answer = await send(request);
  const job = await readJson(answer);
  $("request-id").textContent = answer.headers.get("x-request-id") || "–";
  if (!answer.ok) return showError("v2", answer, job);
  let status = job.status;
  showJobStatus(status);
  const headers = { "x-api-key": request.headers["x-api-key"] };
  while (status === "QUEUED" || status === "PROCESSING") {
    await new Promise((resolve) => setTimeout(resolve, 400));
    const polled = await fetch(job.status_url, { headers });
    const body = await readJson(polled);
    if (!polled.ok && polled.status !== 422) return showError("v2", polled, body);
    status = body.status;
    showJobStatus(status, body.error);
  }
  $("elapsed").textContent = `${Math.round(performance.now() - started)} ms`;
  if (status !== "COMPLETED") return;
  const result = await fetch(job.response_url, { headers });
  const output = await readJson(result);
  if (!result.ok) return showError("v2", result, output);
  // Presigned URLs point at S3, an origin this page's CSP does not load from: the same request through v1 with
  // `Cache-Control: only-if-cached` returns the job's images inline, free, from the tenant's cache.
  const again = request.body.seed === -1 ? null : await send({ ...state.last.request, path: state.catalog.routes.v1, body: { ...request.body, base64: true } }, { "Cache-Control": "only-if-cached" });
  if (again && again.ok) {
    const payload = await again.json();
    showHeaders(again, null);
    showImages((payload.images || [payload.image]).map((b64) => ({ b64 })));
  } else {
    showImages((output.outputs || []).map((link) => ({ url: link })));
  }
  setStatus("COMPLETED.");
}

function showJobStatus(status, error) {
  const badge = $("cache");
  setStatus(error ? `Job ${status}: ${error}` : `Job ${status}`);
  badge.className = "badge status";
  badge.textContent = status;
}

async function readJson(answer) {
  const text = await answer.text();
  try { return JSON.parse(text); } catch { return { error: text || `HTTP ${answer.status}` }; }
}

// ---- showing the answer ----

function resetResult() {
  for (const id of ["seed-used", "elapsed", "budget-left", "request-id"]) $(id).textContent = "–";
  $("cache").className = "badge";
  $("cache").textContent = "–";
  $("reuse-seed").disabled = true;
  for (const objectUrl of state.objectUrls) URL.revokeObjectURL(objectUrl);
  state.objectUrls = [];
  $("images").replaceChildren();
}

function showHeaders(answer, started) {
  const cache = answer.headers.get("x-cache");
  if (cache) {
    $("cache").className = `badge ${cache}`;
    $("cache").textContent = cache;
  }
  const seed = answer.headers.get("x-seed-value");
  if (seed) {
    state.seed = seed;
    $("seed-used").textContent = seed;
    $("reuse-seed").disabled = false;
  }
  if (started !== null) $("elapsed").textContent = `${Math.round(performance.now() - started)} ms`;
  const credits = answer.headers.get("x-budget-remaining-credits");
  const images = answer.headers.get("x-budget-remaining-images");
  const left = [credits && `${credits} credits`, images && `${images} images`].filter(Boolean).join(", ");
  $("budget-left").textContent = left || "no budget set";
  $("request-id").textContent = answer.headers.get("x-request-id") || "–";
}

function sniff(bytes) {
  if (bytes[0] === 0x89 && bytes[1] === 0x50) return "image/png";
  if (bytes[0] === 0x52 && bytes[1] === 0x49) return "image/webp";
  return "image/jpeg";
}

function showImages(items) {
  const box = $("images");
  box.className = items.length > 1 ? "images" : "images single";
  items.forEach((item, index) => {
    const figure = document.createElement("figure");
    const caption = document.createElement("figcaption");
    const link = document.createElement("a");
    if (item.b64) {
      const bytes = Uint8Array.from(atob(item.b64), (c) => c.charCodeAt(0));
      const type = sniff(bytes);
      const objectUrl = URL.createObjectURL(new Blob([bytes], { type }));
      state.objectUrls.push(objectUrl);
      const img = document.createElement("img");
      img.src = objectUrl;
      img.alt = `Generated image ${index + 1} of ${items.length}`;
      figure.append(img);
      link.href = objectUrl;
      link.download = `image-${state.seed || "x"}-${index + 1}.${type.split("/")[1]}`;
      link.textContent = `Download image ${index + 1}`;
    } else {
      link.href = item.url;
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      link.textContent = `Image ${index + 1} (presigned URL)`;
    }
    caption.append(link);
    figure.append(caption);
    box.append(figure);
  });
}

function showError(route, answer, payload) {
  setStatus(`Refused: HTTP ${answer.status}.`);
  const general = [];
  // OpenAI's error object: on OpenAI's route, and API Gateway's own refusals (a bad key, a plan's limit) on any route.
  if (payload.error && typeof payload.error === "object") {
    const param = payload.error.param;
    const field = OPENAI_PARAMS[param] || param;
    if (!(field && showFieldError(field, payload.error.message))) general.push(payload.error.message);
  } else {
    const errors = Array.isArray(payload.errors) ? payload.errors : [];
    for (const item of errors) {
      const field = String(item.field || "").split(".")[0];
      if (!showFieldError(field, item.message)) general.push(`${item.field}: ${item.message}`);
    }
    if (!errors.length || general.length) general.unshift(payload.error || `HTTP ${answer.status}`);
  }
  $("form-error").textContent = general.join(" ");
}

function showFieldError(field, message) {
  const slot = $(`err-${field}`);
  const input = field === "key" ? $("key") : $(`f-${field}`);
  if (!slot || !input) return false;
  slot.textContent = message;
  input.setAttribute("aria-invalid", "true");
  return true;
}

function clearErrors() {
  for (const slot of document.querySelectorAll(".error")) slot.textContent = "";
  for (const input of document.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

function setStatus(text) {
  $("status").textContent = text;
}

// ---- the code panel: the request just made, key masked ----

function masked(key) {
  return key.length > 8 ? `${key.slice(0, 4)}…${key.slice(-4)}` : "…";
}

function renderCode() {
  if (!state.last) return;
  const { route, request } = state.last;
  const target = url(request.path);
  const keyHeader = route === "openai" ? "Authorization" : "x-api-key";
  const key = route === "openai" ? request.headers.Authorization.slice(7) : request.headers["x-api-key"];
  const keyValue = route === "openai" ? "Bearer $GATEWAY_KEY" : "$GATEWAY_KEY";
  const json = JSON.stringify(request.body, null, 2);
  const note = `key: ${masked(key)} (export GATEWAY_KEY=...)`;
  const pyBody = json.replace(/\btrue\b/g, "True").replace(/\bfalse\b/g, "False").replace(/\bnull\b/g, "None");
  const code = {
    curl: `# ${note}\ncurl -sS -X POST '${target}' \\\n  -H "${keyHeader}: ${keyValue}" \\\n  -H 'Content-Type: application/json' \\\n  -d '${JSON.stringify(request.body).replace(/'/g, "'\\''")}'`,
    python: `# ${note}\nimport os\nimport requests\n\nurl = "${target}"\ndata = ${pyBody}\nheaders = {"${keyHeader}": ${route === "openai" ? `"Bearer " + os.environ["GATEWAY_KEY"]` : `os.environ["GATEWAY_KEY"]`}}\nresponse = requests.post(url, json=data, headers=headers)\nprint(response.status_code, response.headers.get("x-cache"))`,
    js: `// ${note}\nconst response = await fetch("${target}", {\n  method: "POST",\n  headers: { "${keyHeader}": ${route === "openai" ? "`Bearer ${GATEWAY_KEY}`" : "GATEWAY_KEY"}, "Content-Type": "application/json" },\n  body: JSON.stringify(${json.replace(/\n/g, "\n  ")}),\n});\nconsole.log(response.status, response.headers.get("x-cache"));`,
    sdk: route === "openai" ? openaiSdk(request.body, note) : segmindSdk(route, request.body, note),
  };
  $("code-text").textContent = code[state.lang];
}

function pyKwargs(body) {
  return Object.entries(body).map(([k, v]) => `    ${k}=${JSON.stringify(v).replace(/^true$/, "True").replace(/^false$/, "False")},`).join("\n");
}

function segmindSdk(route, body, note) {
  const call = route === "v2" ? "run" : "run_sync";
  return `# ${note}\n# Segmind's Python SDK (pip install segmind): run_sync is v1, run submits to v2 and waits.\nimport os\nfrom segmind import SegmindClient\n\nclient = SegmindClient(api_key=os.environ["GATEWAY_KEY"], base_url="${url("v1")}")\nresponse = client.${call}(\n    "${state.catalog.slug}",\n${pyKwargs(body)}\n)`;
}

function openaiSdk(body, note) {
  const { model, prompt, ...rest } = body;
  const standard = ["size", "n", "output_format", "output_compression", "response_format"];
  const args = [`    model="${model}",`, `    prompt=${JSON.stringify(prompt)},`];
  const extra = {};
  for (const [k, v] of Object.entries(rest)) {
    if (standard.includes(k)) args.push(`    ${k}=${JSON.stringify(v)},`);
    else extra[k] = v;
  }
  if (Object.keys(extra).length) args.push(`    extra_body=${JSON.stringify(extra)},`);
  return `# ${note}\nimport os\nfrom openai import OpenAI\n\nclient = OpenAI(base_url="${url("v1")}", api_key=os.environ["GATEWAY_KEY"])\nanswer = client.images.generate(\n${args.join("\n")}\n)`;
}

function selectTab(lang) {
  state.lang = lang;
  for (const tab of document.querySelectorAll("[role=tab]")) {
    const selected = tab.dataset.lang === lang;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
  }
  $("code-text").setAttribute("aria-labelledby", `tab-${lang}`);
  renderCode();
}

function tabKeys(event) {
  const tabs = [...document.querySelectorAll("[role=tab]")];
  const at = tabs.indexOf(document.activeElement);
  if (at < 0 || !["ArrowLeft", "ArrowRight", "Home", "End"].includes(event.key)) return;
  event.preventDefault();
  const next = { ArrowLeft: at - 1, ArrowRight: at + 1, Home: 0, End: tabs.length - 1 }[event.key];
  const tab = tabs[(next + tabs.length) % tabs.length];
  tab.focus();
  selectTab(tab.dataset.lang);
}

async function copyCode() {
  const text = $("code-text").textContent;
  try {
    await navigator.clipboard.writeText(text);
    $("copied").textContent = "Copied.";
  } catch {
    const range = document.createRange();
    range.selectNodeContents($("code-text"));
    window.getSelection().removeAllRanges();
    window.getSelection().addRange(range);
    $("copied").textContent = "Selected: press Ctrl+C to copy.";
  }
}

// ---- usage ----

async function refreshUsage() {
  const key = $("key").value.trim();
  const status = $("usage-status");
  if (!key) {
    status.textContent = "Type your gateway key first.";
    return;
  }
  status.textContent = "Loading…";
  let answer;
  try {
    answer = await fetch(url("v1/usage"), { headers: { "x-api-key": key } });
  } catch (error) {
    status.textContent = `Could not read usage: ${error.message}.`;
    return;
  }
  const usage = await readJson(answer);
  if (!answer.ok) {
    status.textContent = `Could not read usage: ${usage.error || answer.status}.`;
    return;
  }
  status.textContent = `${usage.name} (${usage.plan}), ${usage.month}`;
  const figures = [
    ["Requests", usage.requests], ["Cache hits", usage.cache_hits], ["Images generated", usage.images_generated],
    ["Credits spent", usage.credits_spent], ["Credits reserved", usage.credits_reserved],
    ["Failed generations", usage.failed_generations], ["Rejected requests", usage.rejected_requests],
  ];
  const box = $("usage-figures");
  box.replaceChildren();
  for (const [name, value] of figures) {
    const row = document.createElement("div");
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = name;
    dd.textContent = value ?? "–";
    row.append(dt, dd);
    box.append(row);
  }
  showBudget(usage);
}

function showBudget(usage) {
  const budget = usage.budget || {};
  const remaining = usage.remaining || {};
  const pairs = [["credits", budget.credits, remaining.credits], ["images", budget.images, remaining.images]];
  const found = pairs.find(([, total, left]) => typeof total === "number" && typeof left === "number" && total > 0);
  if (!found) {
    $("budget").hidden = true;
    return;
  }
  const [unit, total, left] = found;
  $("budget").hidden = false;
  $("budget-bar").max = total;
  $("budget-bar").value = left;
  $("budget-label").textContent = `Budget left: ${left} of ${total} ${unit} (${Math.round((100 * left) / total)}%)`;
}

// ---- start ----

function start() {
  const fromQuery = new URLSearchParams(window.location.search).get("gateway");
  $("gateway").value = fromQuery || STORE.getItem("playground.gateway") || defaultGateway();
  $("key").value = STORE.getItem("playground.key") || "";
  $("route").value = STORE.getItem("playground.route") || "v1";
  $("gateway").addEventListener("change", () => { STORE.setItem("playground.gateway", $("gateway").value); loadCatalog(); });
  $("key").addEventListener("change", () => STORE.setItem("playground.key", $("key").value.trim()));
  $("route").addEventListener("change", () => STORE.setItem("playground.route", $("route").value));
  $("generate").addEventListener("submit", generate);
  $("reuse-seed").addEventListener("click", () => { $("f-seed").value = state.seed; $("f-seed").focus(); });
  for (const tab of document.querySelectorAll("[role=tab]")) tab.addEventListener("click", () => selectTab(tab.dataset.lang));
  $("code-tabs").addEventListener("keydown", tabKeys);
  $("copy-code").addEventListener("click", copyCode);
  $("refresh-usage").addEventListener("click", refreshUsage);
  selectTab("curl");
  loadCatalog();
}

start();
