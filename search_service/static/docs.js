// A small, self-contained OpenAPI 3.1 viewer for /docs: every operation with its summary, request
// fields (from the schemas), responses, and a form that sends the request and shows the answer.
const KEY = "framesearch.apiKey";  // shared with the search page (sessionStorage, this tab)
const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function resolve(doc, schema) {
  while (schema && schema.$ref) schema = doc.components.schemas[schema.$ref.split("/").pop()];
  return schema || {};
}

function typeOf(doc, schema) {
  schema = resolve(doc, schema);
  if (schema.anyOf) return schema.anyOf.map((s) => typeOf(doc, s)).join(" | ");
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  if (schema.type === "array") return `${typeOf(doc, schema.items)}[]`;
  return schema.type || schema.title || "object";
}

function limits(schema) {
  const parts = [];
  for (const [key, label] of [["minimum", "≥"], ["maximum", "≤"], ["minLength", "min length"], ["maxLength", "max length"], ["pattern", "pattern"]]) {
    if (schema[key] !== undefined) parts.push(`${label} ${schema[key]}`);
  }
  return parts.join(", ");
}

function fieldsTable(doc, schema) {
  schema = resolve(doc, schema);
  const table = el("table");
  table.append(Object.assign(el("tr"), { innerHTML: "<th>field</th><th>type</th><th>default</th><th>description</th>" }));
  const required = new Set(schema.required || []);
  for (const [name, prop] of Object.entries(schema.properties || {})) {
    const row = el("tr");
    row.append(el("td", "path", name + (required.has(name) ? " *" : "")), el("td", null, typeOf(doc, prop)),
      el("td", null, prop.default === undefined ? "" : JSON.stringify(prop.default)),
      el("td", null, [prop.description, limits(prop)].filter(Boolean).join(" · ")));
    table.append(row);
  }
  return table;
}

function example(doc, schema) {
  schema = resolve(doc, schema);
  const out = {};
  for (const name of schema.required || []) {
    const prop = resolve(doc, schema.properties[name]);
    out[name] = prop.type === "integer" ? 1 : prop.type === "array" ? [] : name.includes("url") ? "s3://bucket/query.jpg" : "a red circle";
  }
  return out;
}

async function send(method, path, body, out) {
  const headers = {};
  const key = $("docskey").value.trim();
  if (key) { headers["X-API-Key"] = key; sessionStorage.setItem(KEY, key); }
  const options = { method: method.toUpperCase(), headers };
  if (body !== null) { headers["Content-Type"] = "application/json"; options.body = body; }
  out.textContent = "…";
  try {
    const response = await fetch(path, options);
    const type = response.headers.get("content-type") || "";
    const text = type.includes("json") ? JSON.stringify(await response.json(), null, 2) : `(${type}, ${(await response.blob()).size} bytes)`;
    out.textContent = `${response.status} ${response.statusText}\n${text}`;
  } catch (error) {
    out.textContent = `request failed: ${error}`;
  }
}

function operation(doc, path, method, op) {
  const block = el("details", "op");
  block.id = `${method}-${path}`;
  const summary = el("summary");
  summary.append(el("span", `method ${method}`, method), el("span", "path", path), el("span", null, op.summary || ""));
  block.append(summary);
  const body = el("div", "body");
  const json = op.requestBody?.content?.["application/json"];
  const form = op.requestBody?.content?.["multipart/form-data"];
  if (json || form) {
    body.append(el("h4", null, form ? "Form fields (multipart)" : "JSON body"), fieldsTable(doc, (json || form).schema));
  }
  const responses = el("table");
  for (const [code, answer] of Object.entries(op.responses || {})) {
    const row = el("tr");
    row.append(el("td", "path", code), el("td", null, answer.description || ""));
    responses.append(row);
  }
  body.append(el("h4", null, "Responses"), responses);
  if (!form) {
    const target = el("input");
    target.value = path.replace("{job_id}", "").replace("{image_id}", "1:0");
    target.size = 50;
    const text = json ? Object.assign(el("textarea"), { value: JSON.stringify(example(doc, json.schema), null, 2) }) : null;
    const out = el("pre", "out");
    const button = el("button", null, "Send");
    button.type = "button";
    button.addEventListener("click", () => send(method, target.value, text ? text.value : null, out));
    body.append(el("h4", null, "Try it"), target, ...(text ? [text] : []), button, out);
  }
  block.append(body);
  return block;
}

async function main() {
  $("docskey").value = sessionStorage.getItem(KEY) || "";
  const doc = await (await fetch("/openapi.json")).json();
  $("version").textContent = `OpenAPI ${doc.openapi} · v${doc.info.version}`;
  const main = $("doc");
  main.replaceChildren(el("p", null, doc.info.description));
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) main.append(operation(doc, path, method, op));
  }
}

main();
