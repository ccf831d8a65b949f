// The playground: the form is built from the gateway's catalog (the data validation reads), requests go to the
// gateway with the key the user typed (kept in sessionStorage only), and every answer's headers are shown.
"use strict";

const $ = (id) => document.getElementById(id);
const STORE = window.sessionStorage;
const state = { catalog: null, model: null, allowed: null, last: null, lang: "curl", seed: null, objectUrls: [] };
const FIRST_PROMPT = "a cat in a spacesuit, studio photo";
// A string field longer than this is a text area (a prompt), a shorter one a line.
const TEXTAREA_FROM = 200;

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
// Every model's fields come from the catalog (the data validation reads), in its order: nothing here is specific to
// a model. A field is found by its role (prompt, seed, width...) where the page must know what it means.

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
  const wanted = new URLSearchParams(window.location.search).get("model") || STORE.getItem("playground.model");
  buildPicker(state.catalog);
  selectModel(modelNamed(wanted) ? wanted : state.catalog.default);
  refreshAllowed();
}

function modelNamed(name) {
  return state.catalog.models.find((model) => model.slug === name || model.openai_id === name);
}

function fieldOf(role, model = state.model) {
  return model.fields.find((field) => field.role === role);
}

function buildPicker(catalog) {
  const picker = $("model");
  picker.replaceChildren();
  for (const model of catalog.models) {
    const option = document.createElement("option");
    option.value = model.slug;
    option.textContent = model.name;
    picker.append(option);
  }
}

function selectModel(name) {
  const carried = state.model ? carriedValues() : {};
  state.model = modelNamed(name);
  $("model").value = state.model.slug;
  STORE.setItem("playground.model", state.model.slug);
  $("model-slug").textContent = state.model.slug;
  $("model-source").href = state.model.source;
  buildForm(state.model, carried);
}

// The prompt and negative prompt typed so far, by role, for the next model's form (not a model's own default).
function carriedValues() {
  const carried = {};
  for (const role of ["prompt", "negative_prompt"]) {
    const field = fieldOf(role);
    const value = field && $(`f-${field.name}`).value;
    if (field && value !== (field.default ?? "")) carried[role] = value;
  }
  return carried;
}

// The models the key's plan allows (GET /v1/models answers with those only); the others stay listed, disabled.
async function refreshAllowed() {
  const key = $("key").value.trim();
  state.allowed = null;
  if (key && state.catalog) {
    try {
      const answer = await fetch(url(state.catalog.routes.models), { headers: { Authorization: `Bearer ${key}` } });
      if (answer.ok) state.allowed = new Set((await answer.json()).data.map((model) => model.id));
    } catch {
      // A network error or CORS: every model stays offered, and a refusal shows when generating.
    }
  }
  if (!state.catalog) return;
  for (const option of $("model").options) {
    const model = modelNamed(option.value);
    const allowed = !state.allowed || state.allowed.has(model.openai_id);
    option.disabled = !allowed;
    option.textContent = `${model.name}${allowed ? "" : " — not in your plan"}`;
  }
  if (state.allowed && !state.allowed.has(state.model.openai_id)) {
    const first = state.catalog.models.find((model) => state.allowed.has(model.openai_id));
    if (first) selectModel(first.slug);
  }
}

function buildForm(model, carried = {}) {
  const box = $("fields");
  box.replaceChildren();
  for (const spec of model.fields) {
    const kind = kindOf(spec);
    const field = document.createElement("div");
    field.className = kind === "textarea" ? "field wide" : "field";
    const label = document.createElement("label");
    label.htmlFor = `f-${spec.name}`;
    label.textContent = labelOf(spec);
    field.append(label);
    const control = makeControl(spec, kind, model, carried);
    const hint = hintOf(spec);
    field.append(control.wrapper || control.input);
    if (hint) {
      const small = document.createElement("small");
      small.id = `hint-${spec.name}`;
      small.textContent = hint;
      field.append(small);
    }
    const error = document.createElement("span");
    error.className = "error";
    error.id = `err-${spec.name}`;
    error.setAttribute("role", "alert");
    field.append(error);
    control.input.setAttribute("aria-describedby", [hint ? `hint-${spec.name}` : "", `err-${spec.name}`].join(" ").trim());
    box.append(field);
  }
  const ratio = fieldOf("aspect_ratio", model);
  if (ratio) $(`f-${ratio.name}`).addEventListener("change", applyAspectRatio);
  applyAspectRatio();
}

function kindOf(spec) {
  if (spec.role === "seed") return "seed";
  if (spec.type === "boolean") return "boolean";
  if (spec.enum) return "select";
  if (spec.type === "string") return (spec.max_length || 0) > TEXTAREA_FROM ? "textarea" : "text";
  return "number";
}

// The field's own name, as a sentence: what the request carries, so the code panel reads the same.
function labelOf(spec) {
  const words = spec.name.replace(/_/g, " ");
  const text = words.charAt(0).toUpperCase() + words.slice(1);
  return spec.random !== undefined ? `${text} (${spec.random}: random)` : text;
}

// Where a field starts: the prompt typed so far, the model's default, else (a required field) the page's sample.
function startingValue(spec, model, carried) {
  if (spec.role in carried) return carried[spec.role];
  if (spec.role === "prompt") return FIRST_PROMPT;
  if (spec.default !== undefined) return spec.default;
  return spec.required ? model.sample[spec.name] ?? "" : "";
}

function makeControl(spec, kind, model, carried) {
  const start = startingValue(spec, model, carried);
  let input;
  if (kind === "textarea" || kind === "text") {
    input = document.createElement(kind === "textarea" ? "textarea" : "input");
    if (spec.max_length) input.maxLength = spec.max_length;
    input.value = start;
    input.required = Boolean(spec.required);
  } else if (kind === "select" || kind === "boolean") {
    input = document.createElement("select");
    const values = kind === "boolean" ? ["true", "false"] : [...spec.enum];
    // An optional field with no default: left out of the request unless chosen (the model's own default applies).
    if (!spec.required && spec.default === undefined) values.unshift("");
    for (const value of values) {
      const option = document.createElement("option");
      option.value = value;
      const size = spec.sizes && spec.sizes[value];
      option.textContent = value === "" ? "(model's default)" : size ? `${value} (${size[0]}×${size[1]})` : value;
      input.append(option);
    }
    input.value = String(start);
  } else {
    input = document.createElement("input");
    input.type = "number";
    input.inputMode = spec.type === "number" ? "decimal" : "numeric";
    if (spec.minimum !== undefined) input.min = spec.minimum;
    if (spec.maximum !== undefined) input.max = spec.maximum;
    input.step = spec.type === "number" ? "any" : String(spec.multiple_of || 1);
    // A fresh seed on each visit: a newcomer's first Generate is a MISS (not the README's sample, cached already),
    // and pressing it again is a HIT.
    input.value = kind === "seed" ? freshSeed(spec) : start;
  }
  input.id = `f-${spec.name}`;
  input.name = spec.name;
  if (kind !== "seed") return { input };
  const wrapper = document.createElement("div");
  wrapper.className = "inline";
  const random = document.createElement("button");
  random.type = "button";
  random.textContent = "Random";
  if (spec.random !== undefined) {
    random.title = `Seed ${spec.random}: a random seed (never read from the cache)`;
    random.addEventListener("click", () => { input.value = String(spec.random); });
  } else {
    random.title = "A new seed, drawn here";
    random.addEventListener("click", () => { input.value = freshSeed(spec); });
  }
  wrapper.append(input, random);
  return { input, wrapper };
}

// A seed drawn uniformly within the field's range (53 random bits: ranges reach 10^15).
function freshSeed(spec) {
  const low = spec.minimum ?? 0;
  const high = spec.maximum ?? 2 ** 32 - 1;
  const [upper, lower] = crypto.getRandomValues(new Uint32Array(2));
  const unit = (upper * 2 ** 21 + (lower >>> 11)) / 2 ** 53;
  return String(low + Math.floor(unit * (high - low + 1)));
}

function hintOf(spec) {
  // A seed's own text below says what its description does, with the range.
  const parts = spec.description && spec.role !== "seed" ? [spec.description] : [];
  const low = spec.minimum;
  const high = spec.maximum;
  if (spec.role === "seed") {
    const random = spec.random !== undefined ? `${spec.random} (random, never cached) or ` : "";
    parts.push(`${random}${low ?? 0} to ${high ?? 2 ** 32 - 1}; a new one on each visit`);
  } else if (low !== undefined || high !== undefined) {
    const range = low === high ? `only ${low}` : `${low ?? "…"} to ${high ?? "…"}`;
    const step = spec.multiple_of ? ` in steps of ${spec.multiple_of}` : "";
    parts.push(`${range}${step}${spec.default !== undefined ? `, default ${spec.default}` : ""}`);
  } else if (spec.max_length && !spec.enum) {
    parts.push(`up to ${spec.max_length} characters`);
  }
  return parts.join(" · ");
}

// An aspect ratio with a known size sets the width and height (and disables them); one without leaves them free.
function applyAspectRatio() {
  const ratio = fieldOf("aspect_ratio");
  const sides = [fieldOf("width"), fieldOf("height")];
  if (!ratio || !sides[0]) return;
  const size = (ratio.sizes || {})[$(`f-${ratio.name}`).value];
  sides.forEach((side, index) => {
    const input = $(`f-${side.name}`);
    input.disabled = Boolean(size);
    if (size) input.value = size[index];
  });
}

// ---- the request ----

function readFields() {
  const body = {};
  for (const spec of state.model.fields) {
    const input = $(`f-${spec.name}`);
    if (input.disabled) continue;
    const value = parsed(spec, input.value);
    if (value === undefined) continue;
    // The prompt, the seed and required fields always; others only when they differ from the default (shorter).
    if (spec.required || spec.role === "prompt" || spec.role === "seed" || value !== spec.default) body[spec.name] = value;
  }
  return body;
}

// A control's text as the field's JSON value; undefined leaves the field out (the model's default applies).
function parsed(spec, text) {
  if (spec.type === "string") return text === "" && spec.default === undefined && !spec.required ? undefined : text;
  if (text.trim() === "") return undefined;
  if (spec.type === "boolean") return text === "true";
  return Number(text);
}

// OpenAI's `size` for the form: the width and height where the model has them, else its aspect ratio as a size of
// those proportions (the door picks the model's ratio nearest to it). None when the form keeps the model's default.
function openaiSize(fields) {
  const [width, height, ratio] = ["width", "height", "aspect_ratio"].map((role) => fieldOf(role));
  if (width && height) {
    if (![width, height, ratio].some((spec) => spec && fields[spec.name] !== undefined)) return undefined;
    return `${Number($(`f-${width.name}`).value)}x${Number($(`f-${height.name}`).value)}`;
  }
  const chosen = ratio && fields[ratio.name];
  if (!chosen) return undefined;
  const known = (ratio.sizes || {})[chosen];
  if (known) return `${known[0]}x${known[1]}`;
  const [wide, high] = chosen.split(":").map(Number);
  const scale = 1024 / Math.max(wide, high);
  return `${Math.round(wide * scale)}x${Math.round(high * scale)}`;
}

function buildRequest(route, fields, key) {
  const model = state.model;
  if (route === "openai") {
    const body = { model: model.openai_id, prompt: fields[fieldOf("prompt").name] };
    for (const [name, value] of Object.entries(fields)) {
      const param = model.openai.params[name];
      if (param === undefined) body[name] = value;  // the model's own field, by its own name
      else if (param === "n" || param === "output_compression") body[param] = value;
      else if (param === "output_format") body[param] = model.openai.formats[value];
    }
    const size = openaiSize(fields);
    if (size) body.size = size;
    body.response_format = "b64_json";
    const headers = { Authorization: `Bearer ${key}`, "Content-Type": "application/json" };
    return { method: "POST", path: state.catalog.routes.openai, headers, body };
  }
  const body = { ...fields };
  // A model with a base64 field answers JSON with it; one without answers the image's bytes (both are shown).
  if (route === "v1" && model.base64) body[model.base64] = true;
  return { method: "POST", path: model.routes[route], headers: { "x-api-key": key, "Content-Type": "application/json" }, body };
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
  showHeaders(answer, started);
  if (!answer.ok) return showError(route, answer, await readJson(answer));
  setStatus(`Done: HTTP ${answer.status}.`);
  if (route === "openai") {
    const payload = await answer.json();
    showImages((payload.data || []).map((item) => item.b64_json ? { b64: item.b64_json } : { url: item.url }));
  } else {
    showImages(await v1Images(answer));
  }
}

// A v1 answer's images: base64 JSON, presigned URLs (a batch too large to inline, or asked for), or, from a model
// with no base64 field, the image's bytes.
async function v1Images(answer) {
  if ((answer.headers.get("content-type") || "").startsWith("image/")) return [{ blob: await answer.blob() }];
  const payload = await answer.json();
  if (payload.images && payload.images.length && typeof payload.images[0] === "object") {
    return payload.images.map((item) => ({ url: item.url }));
  }
  return (payload.images || [payload.image]).map((b64) => ({ b64 }));
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
  const again = randomSeed(request.body) ? null : await send(
    { ...request, path: state.model.routes.v1, body: buildRequest("v1", request.body, "").body },
    { "Cache-Control": "only-if-cached" },
  );
  const images = again && again.ok ? await v1Images(again) : [];
  if (images.length && !images[0].url) {
    showHeaders(again, null);
    showImages(images);
  } else {
    showImages((output.outputs || []).map((link) => ({ url: link })));
  }
  setStatus("COMPLETED.");
}

// A request for a random seed: its images are never read back from the cache.
function randomSeed(body) {
  const seed = fieldOf("seed");
  return Boolean(seed) && (seed.random === undefined ? body[seed.name] === undefined : body[seed.name] === seed.random);
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

function decoded(b64) {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return new Blob([bytes], { type: sniff(bytes) });
}

function showImages(items) {
  const box = $("images");
  box.className = items.length > 1 ? "images" : "images single";
  items.forEach((item, index) => {
    const figure = document.createElement("figure");
    const caption = document.createElement("figcaption");
    const link = document.createElement("a");
    if (item.b64 || item.blob) {
      const blob = item.blob || decoded(item.b64);
      const type = blob.type;
      const objectUrl = URL.createObjectURL(blob);
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
    const field = fieldOfParam(param);
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

// The form's field an OpenAI parameter sets (`size`: the width, or the aspect ratio); the model's own by name.
function fieldOfParam(param) {
  const found = Object.entries(state.model.openai.params).find(([, name]) => name === param);
  return found ? found[0] : param;
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
  return `# ${note}\n# Segmind's Python SDK (pip install segmind): run_sync is v1, run submits to v2 and waits.\nimport os\nfrom segmind import SegmindClient\n\nclient = SegmindClient(api_key=os.environ["GATEWAY_KEY"], base_url="${url("v1")}")\nresponse = client.${call}(\n    "${state.model.slug}",\n${pyKwargs(body)}\n)`;
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
  // This month's images and credits by model, named as the picker names them.
  for (const [slug, by] of Object.entries(usage.by_model || {})) {
    const model = state.catalog && modelNamed(slug);
    const images = `${by.images_generated} image${by.images_generated === 1 ? "" : "s"}`;
    figures.push([model ? model.name : slug, `${images}, ${by.credits_spent} credits`]);
  }
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

function reuseSeed() {
  const seed = fieldOf("seed");
  if (!seed) return;
  $(`f-${seed.name}`).value = state.seed;
  $(`f-${seed.name}`).focus();
}

function start() {
  const fromQuery = new URLSearchParams(window.location.search).get("gateway");
  $("gateway").value = fromQuery || STORE.getItem("playground.gateway") || defaultGateway();
  $("key").value = STORE.getItem("playground.key") || "";
  $("route").value = STORE.getItem("playground.route") || "v1";
  $("gateway").addEventListener("change", () => { STORE.setItem("playground.gateway", $("gateway").value); loadCatalog(); });
  $("key").addEventListener("change", () => { STORE.setItem("playground.key", $("key").value.trim()); refreshAllowed(); });
  $("model").addEventListener("change", () => selectModel($("model").value));
  $("route").addEventListener("change", () => STORE.setItem("playground.route", $("route").value));
  $("generate").addEventListener("submit", generate);
  $("reuse-seed").addEventListener("click", reuseSeed);
  for (const tab of document.querySelectorAll("[role=tab]")) tab.addEventListener("click", () => selectTab(tab.dataset.lang));
  $("code-tabs").addEventListener("keydown", tabKeys);
  $("copy-code").addEventListener("click", copyCode);
  $("refresh-usage").addEventListener("click", refreshUsage);
  selectTab("curl");
  loadCatalog();
}

start();
