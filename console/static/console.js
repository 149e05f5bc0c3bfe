// The hub's steward console: plain JavaScript, no library, nothing loaded from outside the hub.
// It speaks only the public GraphQL API with the signed-in token, so the server decides what each role
// sees; fields that come back FORBIDDEN are left out of the page.
"use strict";

const TOKEN_KEY = "hub.console.token";
const STEWARD_KEY = "hub.console.steward";
const GRAPHQL = new URL("../graphql", location.href).href;
const ATTRIBUTES = ["givenName", "familyName", "dateOfBirth", "email", "phone", "addressLine1", "addressLine2",
  "locality", "postcode", "region", "country", "nationalId"];
const LABELS = {givenName: "Given name", familyName: "Family name", dateOfBirth: "Date of birth", email: "Email",
  phone: "Phone", addressLine1: "Address line 1", addressLine2: "Address line 2", locality: "Locality",
  postcode: "Postcode", region: "Region", country: "Country", nationalId: "National id"};
const ATTRS = ATTRIBUTES.join(" ");

// ---------------------------------------------------------------------------------------------- helpers

/** Build an element: h("td", {class: "num"}, "text", child...). Text is always set as text, never as HTML. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "style") el.style.cssText = v;  // CSSOM: allowed by the CSP, unlike a style attribute
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) el.setAttribute(k, v);
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const main = () => document.getElementById("main");
/** Replace an element's children; arrays are flattened and null/false left out. */
function fill(el, ...nodes) {
  el.replaceChildren(...nodes.flat(Infinity).filter((n) => n !== null && n !== undefined && n !== false));
}
function show(...nodes) { fill(main(), ...nodes); }
function fmtTime(v) { return v ? new Date(v).toLocaleString() : ""; }
function fmtPct(v) { return v === null || v === undefined ? "" : (100 * v).toFixed(1) + " %"; }
function fmtAge(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 120) return Math.round(seconds) + " s";
  if (seconds < 7200) return Math.round(seconds / 60) + " min";
  if (seconds < 172800) return Math.round(seconds / 3600) + " h";
  return Math.round(seconds / 86400) + " d";
}

function banner(text, kind) {
  const b = document.getElementById("banner");
  if (!text) { b.hidden = true; b.textContent = ""; return; }
  b.className = kind || "";
  b.textContent = text;
  b.hidden = false;
}

// ---------------------------------------------------------------------------------------------- GraphQL

const token = () => sessionStorage.getItem(TOKEN_KEY);

class ApiError extends Error {
  constructor(message, code) { super(message); this.code = code; }
}

/** Run a GraphQL operation with the signed-in token; returns {data, errors}. A 401 signs out. */
async function gql(query, variables) {
  const t = token();
  if (!t) { location.hash = "#/signin"; throw new ApiError("not signed in", "UNAUTHENTICATED"); }
  const response = await fetch(GRAPHQL, {
    method: "POST",
    headers: {"content-type": "application/json", "authorization": "Bearer " + t},
    body: JSON.stringify({query, variables: variables || {}}),
  });
  let body;
  try { body = await response.json(); } catch (e) { body = {errors: [{message: `HTTP ${response.status}`}]}; }
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    if (!document.getElementById("signin")) location.hash = "#/signin";  // the sign-in form says so itself
    throw new ApiError("the token was not accepted", "UNAUTHENTICATED");
  }
  return {data: body.data || null, errors: body.errors || []};
}

const code = (e) => (e.extensions && e.extensions.code) || "";

/** Fields the server refused (FORBIDDEN on a field inside the data): their names, to leave out of the page. */
function forbiddenFields(errors) {
  const names = new Set();
  for (const e of errors) {
    if (code(e) !== "FORBIDDEN" || !e.path || e.path.length < 2) continue;
    const last = [...e.path].reverse().find((p) => typeof p === "string");
    if (last) names.add(last);
  }
  return names;
}

/** The errors that are not a refused field: an operation refused, bad input, a conflict... */
function operationErrors(errors) {
  return errors.filter((e) => !(code(e) === "FORBIDDEN" && e.path && e.path.length >= 2));
}

/** Run an operation whose top-level result must be there; throw its first error otherwise. */
async function need(query, variables, field) {
  const {data, errors} = await gql(query, variables);
  const bad = operationErrors(errors);
  if (!data || data[field] === undefined || (data[field] === null && bad.length)) {
    const e = bad[0] || errors[0] || {message: "no answer"};
    throw new ApiError(e.message, code(e));
  }
  return {value: data[field], hidden: forbiddenFields(errors)};
}

function refusal(e) {
  if (e.code === "FORBIDDEN") return h("div", {class: "card"}, h("strong", {}, "Not available to your role. "),
    h("span", {class: "muted"}, e.message));
  return h("div", {class: "card"}, h("strong", {}, (e.code || "Error") + ": "), e.message);
}

// ---------------------------------------------------------------------------------------------- sign in

function signinPage() {
  document.getElementById("top").hidden = true;
  const input = h("input", {type: "password", id: "token", autocomplete: "off", placeholder: "hub token",
    "aria-label": "Hub token"});
  const message = h("p", {class: "muted", id: "signin-message"},
    "Sign in with a token from `hub token create`. It stays in this tab only (session storage).");
  const form = h("form", {class: "card signin", id: "signin", onsubmit: async (ev) => {
    ev.preventDefault();
    const value = input.value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    try {
      const {errors} = await gql("{ sourceSystems { name } }");
      if (operationErrors(errors).length && !errors.some((e) => code(e) === "FORBIDDEN")) {
        throw new ApiError(errors[0].message, code(errors[0]));
      }
      // the server says whether this token may work the review queue; without it the page offers no steward
      // actions (the server would refuse them anyway)
      const probe = await gql("{ matchCandidates(first: 1) { pageInfo { hasNextPage } } }");
      sessionStorage.setItem(STEWARD_KEY, probe.errors.some((e) => code(e) === "FORBIDDEN") ? "0" : "1");
      location.hash = sessionStorage.getItem("hub.console.next") || "#/queue";
      sessionStorage.removeItem("hub.console.next");
    } catch (e) {
      sessionStorage.removeItem(TOKEN_KEY);
      message.textContent = "Sign-in failed: " + e.message;
      message.className = "error";
    }
  }}, h("h1", {}, "Sign in to the hub console"), message, input,
  h("button", {type: "submit", class: "primary"}, "Sign in"));
  show(form);
  input.focus();
}

// ---------------------------------------------------------------------------------------------- queue

const CANDIDATE_LIST = `query Queue($first: Int!, $after: String, $orderBy: CandidateOrder!, $system: String,
    $min: Float, $max: Float) {
  matchCandidates(status: PENDING, first: $first, after: $after, orderBy: $orderBy, system: $system,
                  minProbability: $min, maxProbability: $max) {
    edges { cursor node { id matchProbability createdAt
      customer { id givenName familyName } otherCustomer { id givenName familyName } } }
    pageInfo { hasNextPage endCursor }
  }
}`;

const CUSTOMER_FIELDS = `id version ${ATTRS} createdAt updatedAt
  sourceRecords { system key ${ATTRS} updatedAt }`;

const CANDIDATE = `query Candidate($id: ID!) {
  matchCandidate(id: $id) { id status matchProbability createdAt resolvedBy note
    explanation { comparison level matchWeight }
    customer { ${CUSTOMER_FIELDS} } otherCustomer { ${CUSTOMER_FIELDS} } }
}`;

const RESOLVE = `mutation Resolve($id: ID!, $decision: MatchDecision!, $note: String, $v: Int) {
  resolveMatchCandidate(id: $id, decision: $decision, note: $note, expectedVersion: $v) { id status }
}`;

const queue = {items: [], index: 0, after: null, more: false, filters: null, current: null, hidden: new Set(),
  decided: 0, busy: false};

function queueFilters() {
  const q = new URLSearchParams(location.hash.split("?")[1] || "");
  const num = (k) => (q.get(k) === null || q.get(k) === "" ? null : Number(q.get(k)));
  return {orderBy: q.get("order") || "MOST_UNCERTAIN", system: q.get("system") || null, min: num("min"),
    max: num("max")};
}

async function loadQueuePage(reset) {
  if (reset) { queue.items = []; queue.index = 0; queue.after = null; }
  const f = queue.filters;
  const {value} = await need(CANDIDATE_LIST, {first: 50, after: queue.after, orderBy: f.orderBy, system: f.system,
    min: f.min, max: f.max}, "matchCandidates");
  queue.items.push(...value.edges.map((e) => e.node));
  queue.after = value.pageInfo.endCursor;
  queue.more = value.pageInfo.hasNextPage;
}

async function queuePage() {
  queue.filters = queueFilters();
  let systems = [];
  try {
    const {data} = await gql("{ sourceSystems { name } }");
    systems = (data && data.sourceSystems || []).map((x) => x.name);
  } catch (e) { /* the filter then offers no systems */ }
  try { await loadQueuePage(true); } catch (e) { show(h("h1", {}, "Review queue"), refusal(e)); return; }
  const f = queue.filters;
  const order = h("select", {id: "order"}, ["MOST_UNCERTAIN", "NEWEST", "OLDEST"].map((o) =>
    h("option", {value: o, selected: o === f.orderBy}, o.replace("_", " ").toLowerCase())));
  const system = h("select", {id: "system"}, h("option", {value: ""}, "all systems"),
    systems.map((n) => h("option", {value: n, selected: n === f.system}, n)));
  const min = h("input", {id: "min", type: "number", min: 0, max: 1, step: "0.01", value: f.min ?? "", size: 5});
  const max = h("input", {id: "max", type: "number", min: 0, max: 1, step: "0.01", value: f.max ?? "", size: 5});
  const apply = () => {
    const q = new URLSearchParams();
    if (order.value !== "MOST_UNCERTAIN") q.set("order", order.value);
    if (system.value) q.set("system", system.value);
    if (min.value !== "") q.set("min", min.value);
    if (max.value !== "") q.set("max", max.value);
    location.hash = "#/queue" + (q.toString() ? "?" + q : "");
  };
  const filters = h("form", {class: "filters", onsubmit: (ev) => { ev.preventDefault(); apply(); }},
    h("label", {}, "Order", order), h("label", {}, "System", system),
    h("label", {}, "Probability from", min), h("label", {}, "to", max),
    h("button", {type: "submit"}, "Filter"),
    h("span", {class: "muted small"}, h("kbd", {}, "j"), "/", h("kbd", {}, "k"), " next/previous, ",
      h("kbd", {}, "m"), " merge, ", h("kbd", {}, "n"), " not a match, ", h("kbd", {}, "s"), " skip, ",
      h("kbd", {}, "/"), " note, ", h("kbd", {}, "o"), " open customer"));
  show(h("h1", {}, "Review queue"), filters,
    h("div", {class: "row"}, h("div", {class: "queue-list card", id: "queue-list"}),
      h("div", {class: "grow", id: "candidate"})));
  renderQueueList();
  if (queue.items.length) await openCandidate(0);
  else fill(document.getElementById("candidate"), 
    h("div", {class: "card", id: "queue-empty"}, "No pending candidates match these filters."));
}

function renderQueueList() {
  const list = document.getElementById("queue-list");
  if (!list) return;
  const name = (c) => [c.givenName, c.familyName].filter(Boolean).join(" ") || "#" + c.id;
  const rows = queue.items.map((c, i) => h("tr", {class: "clickable" + (i === queue.index ? " selected" : ""),
    dataset: {candidate: c.id}, onclick: () => openCandidate(i)},
    h("td", {class: "num"}, c.matchProbability.toFixed(3)),
    h("td", {}, name(c.customer), h("br"), h("span", {class: "muted"}, name(c.otherCustomer)))));
  fill(list, h("div", {class: "muted small", id: "queue-count"},
    `${queue.items.length}${queue.more ? "+" : ""} pending · ${queue.decided} decided this session`),
  h("table", {}, h("thead", {}, h("tr", {}, h("th", {class: "num"}, "p"), h("th", {}, "Golden records"))),
    h("tbody", {}, rows)),
  queue.more ? h("button", {type: "button", onclick: async () => { await loadQueuePage(false); renderQueueList(); }},
    "Load more") : null);
  const sel = list.querySelector("tr.selected");
  if (sel) sel.scrollIntoView({block: "nearest"});
}

async function openCandidate(i) {
  if (i < 0 || i >= queue.items.length) return;
  queue.index = i;
  renderQueueList();
  const box = document.getElementById("candidate");
  let value, hidden;
  try {
    ({value, hidden} = await need(CANDIDATE, {id: queue.items[i].id}, "matchCandidate"));
  } catch (e) { fill(box, refusal(e)); return; }
  if (!value) { fill(box, h("div", {class: "card"}, "This candidate no longer exists.")); return; }
  queue.current = value;
  queue.hidden = hidden;
  fill(box, renderCandidate(value, hidden));
}

function valueOf(x) { return x === null || x === undefined ? "" : String(x); }

function renderCandidate(c, hidden) {
  const a = c.customer, b = c.otherCustomer;
  const shown = ATTRIBUTES.filter((f) => !hidden.has(f));
  const rows = shown.map((f) => {
    const differ = valueOf(a[f]) !== valueOf(b[f]) && (a[f] || b[f]);
    return h("tr", {class: differ ? "diff" : null, dataset: {field: f}}, h("th", {}, LABELS[f]),
      h("td", {}, valueOf(a[f])), h("td", {}, valueOf(b[f])));
  });
  const note = h("textarea", {id: "note", placeholder: "note (optional; / to focus)", "aria-label": "Note"});
  const pending = c.status === "PENDING";
  const actions = h("div", {class: "actions"},
    h("button", {type: "button", class: "good", id: "merge", disabled: !pending, onclick: () => decide("MERGE")},
      "Merge (m)"),
    h("button", {type: "button", class: "bad", id: "notmatch", disabled: !pending,
      onclick: () => decide("NOT_A_MATCH")}, "Not a match (n)"),
    h("button", {type: "button", id: "skip", onclick: () => skip()}, "Skip (s)"), note);
  return h("div", {class: "card", id: "candidate-card", dataset: {candidate: c.id}},
    h("h2", {}, `Candidate ${c.id} · p = ${c.matchProbability.toFixed(3)} `,
      h("span", {class: "pill"}, c.status)),
    actions,
    h("table", {id: "compare"}, h("thead", {}, h("tr", {}, h("th", {}, "Attribute"),
      h("th", {}, h("a", {href: `#/customer/${a.id}`}, `Customer ${a.id}`), ` v${a.version}`),
      h("th", {}, h("a", {href: `#/customer/${b.id}`}, `Customer ${b.id}`), ` v${b.version}`))),
    h("tbody", {}, rows)),
    h("h3", {}, "Evidence (match weights, the waterfall of the decision)"), waterfall(c.explanation),
    h("h3", {}, `Source records of customer ${a.id}`), recordsTable(a.sourceRecords, hidden),
    h("h3", {}, `Source records of customer ${b.id}`), recordsTable(b.sourceRecords, hidden));
}

function recordsTable(records, hidden, actions) {
  const shown = ATTRIBUTES.filter((f) => !hidden.has(f) && records.some((r) => r[f]));
  return h("div", {class: "scroll"}, h("table", {class: "records"}, h("thead", {}, h("tr", {}, h("th", {}, "System / key"),
    shown.map((f) => h("th", {}, LABELS[f])), h("th", {}, "Updated"), actions ? h("th", {}, "") : null)),
  h("tbody", {}, records.map((r) => h("tr", {dataset: {record: `${r.system}/${r.key}`}},
    h("td", {}, `${r.system} / ${r.key}`), shown.map((f) => h("td", {}, valueOf(r[f]))),
    h("td", {class: "small"}, fmtTime(r.updatedAt)), actions ? h("td", {}, actions(r)) : null)))));
}

/** The comparisons' match weights as a waterfall: each bar starts where the previous one ended. */
function waterfall(explanation) {
  if (!explanation || !explanation.length) return h("p", {class: "muted"}, "No explanation stored.");
  const rowH = 22, labelW = 260, width = 640, barW = width - labelW - 60;
  let run = 0, lo = 0, hi = 0;
  const steps = explanation.map((e) => { const start = run; run += e.matchWeight; lo = Math.min(lo, run);
    hi = Math.max(hi, run); return {...e, start, end: run}; });
  const span = Math.max(hi - lo, 1e-9);
  const x = (v) => labelW + ((v - lo) / span) * barW;
  const height = rowH * (steps.length + 1) + 10;
  const svg = s("svg", {class: "chart", id: "waterfall", width, height, viewBox: `0 0 ${width} ${height}`,
    role: "img", "aria-label": "match weights"},
  s("line", {x1: x(0), x2: x(0), y1: 0, y2: height, stroke: "#999", "stroke-dasharray": "3 3"}),
  steps.map((e, i) => {
    const y = i * rowH + 4, left = Math.min(x(e.start), x(e.end)), w = Math.max(Math.abs(x(e.end) - x(e.start)), 1);
    return s("g", {class: "step"},
      s("text", {x: 4, y: y + 14}, `${e.comparison}: ${e.level}`),
      s("rect", {x: left, y, width: w, height: rowH - 6, fill: e.matchWeight >= 0 ? "#2e7d32" : "#c62828"}),
      s("text", {x: left + w + 4, y: y + 14}, (e.matchWeight >= 0 ? "+" : "") + e.matchWeight.toFixed(2)));
  }),
  s("text", {x: 4, y: steps.length * rowH + 18, "font-weight": "bold"}, `total ${run.toFixed(2)}`));
  return svg;
}

async function decide(decision) {
  const c = queue.current;
  if (!c || queue.busy || c.status !== "PENDING") return;
  queue.busy = true;
  const note = (document.getElementById("note") || {}).value || null;
  try {
    const {data, errors} = await gql(RESOLVE, {id: c.id, decision, note, v: c.customer.version});
    const bad = operationErrors(errors);
    if (bad.length) {
      if (code(bad[0]) === "CONFLICT") {
        banner(`Conflict: ${bad[0].message}. The candidate was reloaded; decide again on what you now see.`, "error");
        await openCandidate(queue.index);
      } else if (code(bad[0]) === "NOT_FOUND") {
        banner(bad[0].message + ". Removed from the list.", "error");
        dropCurrent();
      } else {
        banner(`${code(bad[0]) || "Error"}: ${bad[0].message}`, "error");
      }
      return;
    }
    banner(`Candidate ${c.id}: ${data.resolveMatchCandidate.status.toLowerCase()}.`, "ok");
    queue.decided += 1;
    document.body.dataset.decided = String(queue.decided);
    await dropCurrent();
  } finally { queue.busy = false; }
}

async function dropCurrent() {
  queue.items.splice(queue.index, 1);
  if (queue.index >= queue.items.length && queue.more) await loadQueuePage(false);
  if (queue.index >= queue.items.length) queue.index = Math.max(queue.items.length - 1, 0);
  if (queue.items.length) await openCandidate(queue.index);
  else {
    renderQueueList();
    queue.current = null;
    fill(document.getElementById("candidate"), h("div", {class: "card", id: "queue-empty"},
      "The queue is empty. Well done."));
  }
}

async function skip() {
  if (queue.index + 1 >= queue.items.length && queue.more) await loadQueuePage(false);
  if (queue.index + 1 < queue.items.length) await openCandidate(queue.index + 1);
}

function onQueueKey(ev) {
  const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(ev.target.tagName);
  if (typing) {
    if (ev.key === "Escape") ev.target.blur();
    return;
  }
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const act = {m: () => decide("MERGE"), n: () => decide("NOT_A_MATCH"), s: skip, j: skip,
    k: () => openCandidate(queue.index - 1),
    o: () => { if (queue.current) location.hash = `#/customer/${queue.current.customer.id}`; },
    "/": () => { const n = document.getElementById("note"); if (n) n.focus(); }}[ev.key];
  if (act) { ev.preventDefault(); act(); }
}

// ---------------------------------------------------------------------------------------------- customer

const CUSTOMER = `query Customer($id: ID!, $asOf: DateTime) {
  customer(id: $id, asOf: $asOf) { id version ${ATTRS} createdAt updatedAt
    lineage { field value rule sourceRecord { system key updatedAt } }
    sourceRecords { system key ${ATTRS} updatedAt receivedAt }
    history(first: 200) { id kind at actor note changes } }
}`;

const CUSTOMER_ACTIONS = {
  split: `mutation Split($system: String!, $key: String!, $note: String, $v: Int) {
    splitSourceRecord(system: $system, key: $key, note: $note, expectedVersion: $v) { id } }`,
  unmerge: `mutation Unmerge($id: ID!, $note: String) { unmergeCustomer(id: $id, note: $note) { id } }`,
  override: `mutation Override($id: ID!, $field: String!, $value: String, $note: String!, $v: Int) {
    overrideAttribute(customerId: $id, field: $field, value: $value, note: $note, expectedVersion: $v) { id version } }`,
};

async function customerPage(id) {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const asOf = params.get("asOf");
  let value, hidden;
  try {
    ({value, hidden} = await need(CUSTOMER, {id, asOf: asOf ? new Date(asOf).toISOString() : null}, "customer"));
  } catch (e) { show(h("h1", {}, `Customer ${id}`), refusal(e)); return; }
  if (!value) { show(h("h1", {}, `Customer ${id}`), h("div", {class: "card"}, "No such customer.")); return; }
  if (String(value.id) !== String(id) && !asOf) {
    banner(`Customer ${id} was merged into ${value.id}; showing the surviving record.`);
  }
  const c = value;
  const readOnly = Boolean(asOf) || sessionStorage.getItem(STEWARD_KEY) === "0";
  const note = h("input", {id: "action-note", size: 40, placeholder: "note for your action (required to override)"});

  const reload = async () => {
    document.body.dataset.ready = "";
    await customerPage(id);
    document.body.dataset.ready = "customer";
  };
  const run = async (what, variables, done) => {
    const {data, errors} = await gql(CUSTOMER_ACTIONS[what], {...variables, note: note.value || null});
    const bad = operationErrors(errors);
    if (bad.length) {
      banner(`${code(bad[0]) || "Error"}: ${bad[0].message}` +
        (code(bad[0]) === "CONFLICT" ? ". The record was reloaded." : ""), "error");
      if (code(bad[0]) === "CONFLICT") await reload();
      return;
    }
    banner(done(data), "ok");
    await reload();
  };

  const lineage = Object.fromEntries((c.lineage || []).map((l) => [l.field, l]));
  const overrideAt = {};
  for (const ev of c.history || []) {
    if (ev.kind === "OVERRIDDEN" && ev.changes && ev.changes.fields) {
      for (const f of Object.keys(ev.changes.fields)) if (!overrideAt[f]) overrideAt[f] = ev;
    }
  }
  const attrRows = ATTRIBUTES.filter((f) => !hidden.has(f)).map((f) => {
    const l = lineage[f];
    const overridden = l && l.rule === "steward-override";
    const when = l && l.sourceRecord ? fmtTime(l.sourceRecord.updatedAt)
      : overridden && overrideAt[f] ? fmtTime(overrideAt[f].at) + " by " + overrideAt[f].actor : "";
    const edit = readOnly ? null : h("span", {class: "inline-edit"},
      h("button", {type: "button", class: "small", dataset: {override: f}, onclick: (ev) => {
        const input = h("input", {value: valueOf(c[f]), dataset: {overrideInput: f}, size: 24});
        const save = h("button", {type: "button", class: "primary small", dataset: {save: f}, onclick: () => {
          if (!note.value.trim()) { banner("An override needs a note: say why.", "error"); note.focus(); return; }
          run("override", {id: c.id, field: f, value: input.value, v: c.version},
            () => `${LABELS[f]} overridden.`);
        }}, "Save");
        fill(ev.target.parentNode, input, save);
        input.focus();
      }}, "Override"),
      overridden ? h("button", {type: "button", class: "small", dataset: {clear: f}, onclick: () => {
        if (!note.value.trim()) { banner("Clearing an override needs a note.", "error"); note.focus(); return; }
        run("override", {id: c.id, field: f, value: null, v: c.version}, () => `${LABELS[f]}: override cleared.`);
      }}, "Clear override") : null);
    return h("tr", {dataset: {field: f}}, h("th", {}, LABELS[f]), h("td", {class: "value"}, valueOf(c[f])),
      h("td", {class: "small"}, l ? h("span", {class: "pill" + (overridden ? " override" : "")}, l.rule) : null),
      h("td", {class: "small"}, l && l.sourceRecord ? `${l.sourceRecord.system} / ${l.sourceRecord.key}` :
        overridden ? "steward" : ""),
      h("td", {class: "small"}, when), h("td", {}, edit));
  });

  const split = (r) => readOnly || c.sourceRecords.length < 2 ? null : h("button", {type: "button", class: "small",
    dataset: {split: `${r.system}/${r.key}`}, onclick: () => run("split", {system: r.system, key: r.key,
      v: c.version}, (d) => `${r.system}/${r.key} split out to customer ${d.splitSourceRecord.id}.`)},
  "Split out");

  const asOfInput = h("input", {type: "datetime-local", id: "asof", step: 1,
    value: asOf ? asOf.slice(0, 19) : ""});
  const asOfForm = h("form", {class: "filters", onsubmit: (ev) => {
    ev.preventDefault();
    location.hash = `#/customer/${id}` + (asOfInput.value ? "?asOf=" + encodeURIComponent(asOfInput.value) : "");
  }}, h("label", {}, "As of (your local time)", asOfInput), h("button", {type: "submit"}, "Show"),
  asOf ? h("a", {href: `#/customer/${id}`}, "back to now") : null);

  show(h("h1", {}, `Customer ${c.id} `, h("span", {class: "pill"}, `version ${c.version}`),
    asOf ? h("span", {class: "pill"}, `as of ${fmtTime(asOf)}`) : null),
  asOfForm,
  readOnly ? null : h("div", {class: "actions"}, h("label", {}, "Note ", note)),
  h("div", {class: "card"}, h("h2", {}, "Golden record and lineage"),
    h("table", {id: "golden"}, h("thead", {}, h("tr", {}, h("th", {}, "Attribute"), h("th", {}, "Value"),
      h("th", {}, "Rule"), h("th", {}, "Source"), h("th", {}, "When"), h("th", {}, ""))),
    h("tbody", {}, attrRows))),
  h("div", {class: "card"}, h("h2", {}, "Source records"), recordsTable(c.sourceRecords || [], hidden, split)),
  h("div", {class: "card"}, h("h2", {}, "History"),
    timeline(c.history || [], readOnly ? null : (other) => h("button", {type: "button", class: "small",
      dataset: {unmerge: other}, onclick: () => run("unmerge", {id: other},
        (d) => `Customer ${d.unmergeCustomer.id} unmerged.`)}, `Unmerge ${other}`))));
}

function timeline(events, unmergeButton) {
  if (!events.length) return h("p", {class: "muted"}, "No history visible to you.");
  return h("ol", {class: "timeline", id: "timeline"}, events.map((ev) => {
    const ch = ev.changes || {};
    const fields = ch.fields && typeof ch.fields === "object" ? ch.fields : null;
    const rows = fields ? Object.entries(fields).map(([f, v]) => {
      const pair = v && typeof v === "object" && ("before" in v || "after" in v) ? v : {before: null, after: v};
      return h("tr", {}, h("th", {}, LABELS[f] || f), h("td", {class: "before"}, valueOf(pair.before)),
        h("td", {}, "→"), h("td", {class: "after"}, valueOf(pair.after)));
    }) : [];
    const rest = Object.entries(ch).filter(([k]) => k !== "fields" && k !== "version")
      .map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join(" · ");
    const merged = ev.kind === "MERGED" && Array.isArray(ch.merged) ? ch.merged : [];
    return h("li", {dataset: {kind: ev.kind}}, h("strong", {}, ev.kind), " ",
      h("span", {class: "muted"}, `${fmtTime(ev.at)} · ${ev.actor}`, ch.version ? ` · v${ch.version}` : ""),
      ev.note ? h("div", {}, "“", ev.note, "”") : null,
      rows.length ? h("table", {}, h("tbody", {}, rows)) : null,
      rest ? h("div", {class: "small muted"}, rest) : null,
      unmergeButton && merged.length ? h("div", {}, merged.map(unmergeButton)) : null);
  }));
}

// ---------------------------------------------------------------------------------------------- search

const FIND = `query Find($a: CustomerAttributesInput!, $first: Int!) {
  findCustomers(attributes: $a, first: $first) { matchProbability
    explanation { comparison level matchWeight }
    customer { id givenName familyName dateOfBirth email phone postcode locality } }
}`;

async function searchPage() {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const inputs = ATTRIBUTES.map((f) => h("label", {}, LABELS[f],
    h("input", {name: f, value: params.get(f) || "", size: 16})));
  const results = h("div", {id: "results"});
  const form = h("form", {class: "filters card", id: "search-form", onsubmit: (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const i of form.querySelectorAll("input")) if (i.value.trim()) q.set(i.name, i.value.trim());
    location.hash = "#/search?" + q;
  }}, inputs, h("button", {type: "submit", class: "primary"}, "Search"));
  show(h("h1", {}, "Find customers"), form, results);
  const attributes = Object.fromEntries(ATTRIBUTES.filter((f) => params.get(f)).map((f) => [f, params.get(f)]));
  if (!Object.keys(attributes).length) return;
  let value, hidden;
  try { ({value, hidden} = await need(FIND, {a: attributes, first: 20}, "findCustomers")); } catch (e) {
    fill(results, refusal(e)); return;
  }
  if (!value.length) { fill(results, h("div", {class: "card"}, "No customer matches.")); return; }
  const cols = ["givenName", "familyName", "dateOfBirth", "email", "phone", "postcode", "locality"]
    .filter((f) => !hidden.has(f));
  fill(results, h("table", {id: "search-results"}, h("thead", {}, h("tr", {}, h("th", {class: "num"}, "p"),
    h("th", {}, "Customer"), cols.map((f) => h("th", {}, LABELS[f])), h("th", {}, "Why"))),
  h("tbody", {}, value.map((m) => h("tr", {class: "clickable", dataset: {customer: m.customer.id},
    onclick: () => { location.hash = `#/customer/${m.customer.id}`; }},
  h("td", {class: "num"}, m.matchProbability.toFixed(3)), h("td", {}, h("a", {href: `#/customer/${m.customer.id}`},
    m.customer.id)), cols.map((f) => h("td", {}, valueOf(m.customer[f]))),
  h("td", {class: "small"}, m.explanation.map((e) => `${e.comparison} ${e.level} (${e.matchWeight >= 0 ? "+" : ""}` +
    `${e.matchWeight.toFixed(1)})`).join(", ")))))));
}

// ---------------------------------------------------------------------------------------------- dashboard

const QUALITY = `{ dataQuality {
  computedAt seconds cachedSeconds modelInUse { id createdAt records note }
  totals { sourceRecords goldenRecords pendingCandidates oldestPendingAt recordsPerGolden }
  systems { system records goldenRecords recordsPerGolden latestUpdateAt freshnessSeconds invalidValues
    attributes { attribute present completeness invalid validity } }
  duplicates { recordsPerGolden goldenRecords }
  matchOutcomes { day created linked queued }
  stewardThroughput { day merged notAMatch }
  queueAge { bucket candidates }
} }`;

let lastQuality = null;

async function dashboardPage() {
  show(h("h1", {}, "Data quality"), h("p", {class: "muted"}, "Computing…"));
  let value;
  try { ({value} = await need(QUALITY, {}, "dataQuality")); } catch (e) {
    show(h("h1", {}, "Data quality"), refusal(e)); return;
  }
  lastQuality = value;
  const q = value, t = q.totals;
  const kpi = (label, v, id) => h("div", {class: "kpi", dataset: {kpi: id}}, h("div", {class: "value"}, v),
    h("div", {class: "label"}, label));
  const pendingAge = t.oldestPendingAt ? fmtAge((Date.now() - new Date(t.oldestPendingAt)) / 1000) : "—";
  const model = q.modelInUse ? `#${q.modelInUse.id} (${q.modelInUse.records} records, ${fmtTime(q.modelInUse.createdAt)})`
    : "shipped default";
  const completenessTable = h("table", {id: "completeness"}, h("thead", {}, h("tr", {}, h("th", {}, "System"),
    h("th", {class: "num"}, "Records"), ATTRIBUTES.map((f) => h("th", {class: "num"}, LABELS[f])))),
  h("tbody", {}, q.systems.map((sy) => h("tr", {dataset: {system: sy.system}}, h("th", {}, sy.system),
    h("td", {class: "num"}, sy.records), ATTRIBUTES.map((f) => {
      const a = sy.attributes.find((x) => x.attribute === f);
      return h("td", {class: "num", dataset: {attribute: f}, style: heat(a ? a.completeness : 0)},
        a ? fmtPct(a.completeness) : "");
    })))));
  const validityTable = h("table", {id: "validity"}, h("thead", {}, h("tr", {}, h("th", {}, "System"),
    h("th", {class: "num"}, "Invalid values"), ATTRIBUTES.map((f) => h("th", {class: "num"}, LABELS[f])))),
  h("tbody", {}, q.systems.map((sy) => h("tr", {dataset: {system: sy.system}}, h("th", {}, sy.system),
    h("td", {class: "num"}, sy.invalidValues), ATTRIBUTES.map((f) => {
      const a = sy.attributes.find((x) => x.attribute === f);
      return h("td", {class: "num", dataset: {attribute: f}}, a && a.validity !== null ? fmtPct(a.validity) : "—");
    })))));
  const freshness = h("table", {id: "freshness"}, h("thead", {}, h("tr", {}, h("th", {}, "System"),
    h("th", {class: "num"}, "Records"), h("th", {class: "num"}, "Golden records"), h("th", {class: "num"},
      "Records per golden"), h("th", {}, "Latest update"), h("th", {class: "num"}, "Age"))),
  h("tbody", {}, q.systems.map((sy) => h("tr", {dataset: {system: sy.system}}, h("th", {}, sy.system),
    h("td", {class: "num"}, sy.records), h("td", {class: "num"}, sy.goldenRecords),
    h("td", {class: "num"}, sy.recordsPerGolden.toFixed(3)), h("td", {}, fmtTime(sy.latestUpdateAt)),
    h("td", {class: "num"}, fmtAge(sy.freshnessSeconds))))));
  show(h("h1", {}, "Data quality ", h("button", {type: "button", id: "csv", onclick: downloadCsv}, "Export CSV")),
    h("p", {class: "muted small"}, `Computed ${fmtTime(q.computedAt)} in ${q.seconds.toFixed(3)} s; ` +
      `cached for ${q.cachedSeconds} s. Model in use: ${model}.`),
    h("div", {class: "kpis"}, kpi("Source records", t.sourceRecords, "sourceRecords"),
      kpi("Golden records", t.goldenRecords, "goldenRecords"),
      kpi("Records per golden record", t.recordsPerGolden.toFixed(3), "recordsPerGolden"),
      kpi("Pending candidates", t.pendingCandidates, "pendingCandidates"), kpi("Oldest pending", pendingAge, "oldest")),
    h("div", {class: "card"}, h("h2", {}, "Completeness (share of records with a value)"), completenessTable),
    h("div", {class: "card"}, h("h2", {}, "Validity (share of sent values the hub could standardise)"),
      h("p", {class: "muted small"}, "A value a source sent that failed validation is kept raw and left out of the " +
        "record; the share below is valid / sent per attribute."), validityTable),
    h("div", {class: "card"}, h("h2", {}, "Freshness and duplicates per system"), freshness),
    h("div", {class: "charts"},
      h("div", {class: "card"}, h("h2", {}, "Match outcomes per day"),
        barChart(q.matchOutcomes, "day", [["created", "#2b5797"], ["linked", "#2e7d32"], ["queued", "#e0a100"]],
          "outcomes")),
      h("div", {class: "card"}, h("h2", {}, "Steward decisions per day"),
        barChart(q.stewardThroughput, "day", [["merged", "#2e7d32"], ["notAMatch", "#c62828"]], "throughput")),
      h("div", {class: "card"}, h("h2", {}, "Records per golden record"),
        barChart(q.duplicates.map((d) => ({...d, label: d.recordsPerGolden + (d.recordsPerGolden >= 10 ? "+" : "")})),
          "label", [["goldenRecords", "#7b3fa0"]], "duplicates")),
      h("div", {class: "card"}, h("h2", {}, "Pending queue by age"),
        barChart(q.queueAge, "bucket", [["candidates", "#e0a100"]], "queue-age"))));
}

function heat(share) {
  const hue = Math.round(120 * Math.max(0, Math.min(1, share)));
  return `background: hsl(${hue} 70% 90%)`;
}

/** Grouped bars drawn as inline SVG: rows of {label, series...}. */
function barChart(rows, labelKey, series, id) {
  if (!rows.length) return h("p", {class: "muted"}, "Nothing yet.");
  const width = 560, height = 220, left = 44, bottom = 40, top = 20;
  const max = Math.max(1, ...rows.flatMap((r) => series.map(([k]) => r[k] || 0)));
  const groupW = (width - left - 10) / rows.length, barW = Math.max(2, (groupW - 4) / series.length);
  const y = (v) => top + (height - top - bottom) * (1 - v / max);
  const every = Math.ceil(rows.length / 12);
  return s("svg", {class: "chart", id: "chart-" + id, width, height, viewBox: `0 0 ${width} ${height}`, role: "img"},
    s("line", {x1: left, x2: width - 5, y1: y(0), y2: y(0), stroke: "#999"}),
    s("text", {x: 2, y: y(max) + 4}, String(max)), s("text", {x: 2, y: y(0)}, "0"),
    rows.map((r, i) => s("g", {}, series.map(([k, color], j) => {
      const v = r[k] || 0, x0 = left + i * groupW + 2 + j * barW;
      return s("rect", {x: x0, y: y(v), width: barW - 1, height: y(0) - y(v), fill: color},
        s("title", {}, `${r[labelKey]} ${k}: ${v}`));
    }), i % every === 0 ? s("text", {x: left + i * groupW + 2, y: height - bottom + 14}, labelKey === "day" ?
      String(r[labelKey]).slice(5) : String(r[labelKey])) : null)),
    series.map(([k, color], j) => s("g", {}, s("rect", {x: left + j * 110, y: height - 16, width: 10, height: 10,
      fill: color}), s("text", {x: left + j * 110 + 14, y: height - 7}, k))));
}

function csvCell(v) {
  const text = v === null || v === undefined ? "" : String(v);
  return /[",\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function downloadCsv() {
  const q = lastQuality;
  if (!q) return;
  const lines = [["section", "system", "attribute", "measure", "value"]];
  for (const sy of q.systems) {
    lines.push(["system", sy.system, "", "records", sy.records], ["system", sy.system, "", "goldenRecords", sy.goldenRecords],
      ["system", sy.system, "", "recordsPerGolden", sy.recordsPerGolden],
      ["system", sy.system, "", "latestUpdateAt", sy.latestUpdateAt], ["system", sy.system, "", "invalidValues", sy.invalidValues]);
    for (const a of sy.attributes) {
      lines.push(["attribute", sy.system, a.attribute, "present", a.present],
        ["attribute", sy.system, a.attribute, "completeness", a.completeness],
        ["attribute", sy.system, a.attribute, "invalid", a.invalid],
        ["attribute", sy.system, a.attribute, "validity", a.validity]);
    }
  }
  for (const [k, v] of Object.entries(q.totals)) lines.push(["totals", "", "", k, v]);
  for (const d of q.matchOutcomes) for (const k of ["created", "linked", "queued"]) lines.push(["matchOutcomes", "", d.day, k, d[k]]);
  for (const d of q.stewardThroughput) for (const k of ["merged", "notAMatch"]) lines.push(["stewardThroughput", "", d.day, k, d[k]]);
  for (const d of q.duplicates) lines.push(["duplicates", "", String(d.recordsPerGolden), "goldenRecords", d.goldenRecords]);
  for (const d of q.queueAge) lines.push(["queueAge", "", d.bucket, "candidates", d.candidates]);
  const text = lines.map((l) => l.map(csvCell).join(",")).join("\r\n") + "\r\n";
  const a = h("a", {href: URL.createObjectURL(new Blob([text], {type: "text/csv"})),
    download: `data-quality-${q.computedAt.slice(0, 19).replace(/:/g, "")}.csv`});
  document.body.append(a);
  a.click();
  a.remove();
}

// ---------------------------------------------------------------------------------------------- explorer

const INTROSPECTION = `{ __schema { queryType { name } mutationType { name } subscriptionType { name }
  types { kind name description
    fields(includeDeprecated: true) { name description isDeprecated deprecationReason
      args { name description defaultValue type { ...T } } type { ...T } }
    inputFields { name description defaultValue type { ...T } }
    enumValues(includeDeprecated: true) { name description } } } }
fragment T on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } }`;

let schemaTypes = null;

function typeName(t) {
  if (!t) return "";
  if (t.kind === "NON_NULL") return typeName(t.ofType) + "!";
  if (t.kind === "LIST") return "[" + typeName(t.ofType) + "]";
  return t.name;
}
function baseName(t) { return t.ofType ? baseName(t.ofType) : t.name; }

async function explorerPage() {
  const saved = sessionStorage.getItem("hub.console.explorer") ||
    "{\n  sourceSystems {\n    name\n    recordCount\n  }\n}\n";
  const query = h("textarea", {id: "gql-query", rows: 14, spellcheck: "false"}, saved);
  const variables = h("textarea", {id: "gql-variables", rows: 4, spellcheck: "false", placeholder: "variables (JSON)"});
  const out = h("pre", {id: "gql-result"}, "Run a query with Ctrl+Enter.");
  const docs = h("div", {class: "docs card", id: "docs"}, h("p", {class: "muted"}, "Loading the schema…"));
  const runQuery = async () => {
    sessionStorage.setItem("hub.console.explorer", query.value);
    let vars = {};
    if (variables.value.trim()) {
      try { vars = JSON.parse(variables.value); } catch (e) { out.textContent = "Variables are not JSON: " + e.message; return; }
    }
    out.textContent = "…";
    const started = performance.now();
    const result = await gql(query.value, vars);
    out.textContent = JSON.stringify(result, null, 2) + `\n\n// ${(performance.now() - started).toFixed(0)} ms`;
  };
  query.addEventListener("keydown", (ev) => { if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); runQuery(); } });
  show(h("h1", {}, "API explorer"), h("p", {class: "muted small"},
    `POST ${GRAPHQL} with your token; the same answers your applications get.`),
  h("div", {class: "row explorer"}, h("div", {class: "grow"}, query, variables,
    h("div", {class: "actions"}, h("button", {type: "button", class: "primary", id: "run", onclick: runQuery},
      "Run (Ctrl+Enter)")), out), docs));
  if (!schemaTypes) {
    const {data, errors} = await gql(INTROSPECTION);
    if (!data) { fill(docs, h("p", {}, "The schema could not be read: " + (errors[0] || {}).message)); return; }
    schemaTypes = data.__schema;
  }
  showType(docs, schemaTypes.queryType.name);
}

function showType(docs, name) {
  const t = schemaTypes.types.find((x) => x.name === name);
  const link = (n) => h("a", {onclick: () => showType(docs, n), dataset: {type: n}}, n);
  const roots = [schemaTypes.queryType, schemaTypes.mutationType, schemaTypes.subscriptionType].filter(Boolean);
  const nav = h("div", {class: "small"}, roots.map((r) => [link(r.name), " "]),
    h("select", {"aria-label": "all types", onchange: (ev) => showType(docs, ev.target.value)},
      h("option", {value: ""}, "all types…"), schemaTypes.types.filter((x) => !x.name.startsWith("__"))
        .map((x) => h("option", {value: x.name}, x.name))));
  if (!t) { fill(docs, nav); return; }
  const typeRef = (ref) => h("span", {class: "type"}, typeName(ref).replace(baseName(ref), ""), link(baseName(ref)));
  const fieldView = (f) => h("div", {class: "field", dataset: {field: f.name}}, h("strong", {}, f.name),
    f.args && f.args.length ? ["(", f.args.map((a, i) => [i ? ", " : "", a.name, ": ", typeRef(a.type)]), ")"] : null,
    ": ", typeRef(f.type), f.description ? h("div", {class: "muted small"}, f.description) : null);
  fill(docs, nav, h("h2", {}, t.name, " ", h("span", {class: "pill"}, t.kind.toLowerCase())),
    t.description ? h("p", {class: "muted"}, t.description) : null,
    (t.fields || []).map(fieldView), (t.inputFields || []).map(fieldView),
    (t.enumValues || []).map((e) => h("div", {class: "field"}, h("strong", {}, e.name),
      e.description ? h("div", {class: "muted small"}, e.description) : null)));
}

// ---------------------------------------------------------------------------------------------- routing

async function route() {
  banner(null);
  const [path] = location.hash.slice(1).split("?");
  const parts = path.split("/").filter(Boolean);
  if (parts[0] === "signin" || !token()) {
    if (parts[0] && parts[0] !== "signin") sessionStorage.setItem("hub.console.next", location.hash);
    signinPage();
    return;
  }
  document.getElementById("top").hidden = false;
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("active", a.dataset.page === parts[0]);
  document.onkeydown = parts[0] === "queue" || !parts[0] ? onQueueKey : null;
  document.body.dataset.ready = "";
  try {
    if (parts[0] === "customer" && parts[1]) await customerPage(parts[1]);
    else if (parts[0] === "search") await searchPage();
    else if (parts[0] === "dashboard") await dashboardPage();
    else if (parts[0] === "explorer") await explorerPage();
    else await queuePage();
  } catch (e) {
    if (e.code !== "UNAUTHENTICATED") show(refusal(e));
  }
  // the page has its answer (or its refusal) in place: tests and timings wait for this mark
  document.body.dataset.ready = parts[0] === "customer" ? "customer" : parts[0] || "queue";
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("signout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(STEWARD_KEY);
    location.hash = "#/signin";
  });
  window.addEventListener("hashchange", route);
  route();
});
