// The annotator's workbench: one task at a time, keyboard first, the next task already
// here, and nothing lost. Answers go to an outbox kept in localStorage and are sent with
// their client_label_id until the gateway acknowledges them, so a retry after a reload
// or a dropped network is answered, never stored twice. The latest answer can be changed
// (⌫) while its task's lease holds: a change not yet sent replaces the answer in the
// outbox; one already saved is sent as a change of that label (PUT, with its revision).
import { api } from "./api.js";

const root = document.getElementById("workbench");
const project = root.dataset.project;
const me = root.dataset.me;
const MODE = root.dataset.mode || "label";  // "review": the review queue, with each item's evidence
const contract = JSON.parse(document.getElementById("contract").textContent);
const STORE = `strata.${MODE}.${me}.${project}`;
const IDLE_MS = 30000;       // no input for this long: the person is idle, time stops
const PREFETCH = 2;          // tasks leased ahead, so the next one shows at once
const LEASE_MARGIN_MS = 5000;

const el = (id) => document.getElementById(id);
const ui = {
  item: el("item"), suggestion: el("suggestion"), choices: el("choices"),
  submit: el("submit"), skip: el("skip"), back: el("back"), help: el("help"), amending: el("amending"),
  instructions: el("instructions"), message: el("message"), saveState: el("save-state"),
  sessionCount: el("session-count"), keys: el("keys"), activeTime: el("active-time"),
  totalLabels: el("total-labels"), agreement: el("agreement"), medianTime: el("median-time"),
};

// -- state, kept across reloads ------------------------------------------------------------
function fresh() {
  // last: the latest answer (what ⌫ changes); resume: the task put aside while changing it.
  return {
    current: null, queue: [], outbox: [], last: null, resume: null,
    session: { labeled: 0, skipped: 0, activeMs: 0 },
  };
}
let state = fresh();
try { state = Object.assign(fresh(), JSON.parse(localStorage.getItem(STORE) || "{}")); } catch (e) { /* a fresh start */ }
// A request cut off by a reload may or may not have landed: it is sent again (same key).
for (const e of state.outbox) e.sending = false;
function save() { localStorage.setItem(STORE, JSON.stringify(state)); }

const leaseOk = (task) => !task.lease_expires_at
  || Date.parse(task.lease_expires_at) - Date.now() > LEASE_MARGIN_MS;

// -- hotkeys ---------------------------------------------------------------------------------
const RESERVED = new Set(["?", "S", "Enter", "Escape", "Backspace"]);
function hotkeys(classes) {
  const single = classes.every((c) => c.length === 1 && !RESERVED.has(c));
  if (single && new Set(classes.map((c) => c.toLowerCase())).size === classes.length) {
    return classes.map((c) => c.toLowerCase());
  }
  const pool = "1234567890qwertyuiopadfghjklzxcvbnm".split("");
  return classes.map((c, i) => pool[i] || "");
}

// -- rendering -------------------------------------------------------------------------------
function renderContent(content) {
  ui.item.replaceChildren();
  if (content.kind === "text") {
    const p = document.createElement("p");
    p.className = "item-text";
    p.textContent = content.text;
    ui.item.append(p);
  } else if (content.kind === "image" && content.src) {
    const img = document.createElement("img");
    img.src = content.src;
    img.alt = "the image to label";
    img.className = "item-image";
    ui.item.append(img);
  } else if (content.kind === "features") {
    ui.item.append(renderFeatures(content.values));
  } else {
    const p = document.createElement("p");
    p.textContent = content.uri ? `This image is stored at ${content.uri} and cannot be shown here.` : "This item has no content.";
    ui.item.append(p);
  }
}

function renderFeatures(values) {
  const side = Math.round(Math.sqrt(values.length));
  const wrap = document.createElement("figure");
  wrap.className = "features";
  if (side * side === values.length && side >= 4) {
    // A square vector is most likely an image (8x8 digits): draw it as one.
    const canvas = document.createElement("canvas");
    canvas.width = side; canvas.height = side;
    canvas.className = "pixels";
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", `a ${side} by ${side} grid of feature values`);
    const ctx = canvas.getContext("2d");
    const lo = Math.min(...values), hi = Math.max(...values), span = hi - lo || 1;
    const image = ctx.createImageData(side, side);
    values.forEach((v, i) => {
      const g = 255 - Math.round(255 * (v - lo) / span);
      image.data.set([g, g, g, 255], i * 4);
    });
    ctx.putImageData(image, 0, 0);
    wrap.append(canvas);
  }
  const caption = document.createElement("figcaption");
  caption.className = "muted values";
  caption.textContent = `${values.length} values: ${values.slice(0, 24).join(", ")}${values.length > 24 ? ", …" : ""}`;
  wrap.append(caption);
  return wrap;
}

function renderChoices(task) {
  const keys = hotkeys(task.classes);
  ui.choices.replaceChildren();
  task.classes.forEach((name, i) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "choice";
    b.dataset.value = name;
    b.dataset.key = keys[i];
    b.setAttribute("aria-pressed", "false");
    if (keys[i]) b.setAttribute("aria-keyshortcuts", keys[i]);
    const k = document.createElement("kbd");
    k.textContent = keys[i];
    const label = document.createElement("span");
    label.textContent = name;
    b.append(k, label);
    if (task.prelabel && task.prelabel.value === name) {
      b.classList.add("suggested");
      const s = document.createElement("span");
      s.className = "tag";
      s.textContent = "suggested";
      b.append(s);
    }
    b.addEventListener("click", () => choose(name));
    ui.choices.append(b);
  });
  ui.keys.replaceChildren(
    ...task.classes.map((name, i) => keyItem(keys[i], name)),
    keyItem("Enter", "submit and go on (the suggestion, if you chose nothing)"),
    keyItem("Shift+S", "skip"),
    ...(MODE === "review" ? [] : [keyItem("⌫", "change your last answer (while its lease holds)")]),
    keyItem("Esc", "keep your last answer as it was, when changing it"),
    keyItem("?", "instructions"),
  );
}

function keyItem(key, what) {
  const li = document.createElement("li");
  const k = document.createElement("kbd");
  k.textContent = key;
  li.append(k, ` ${what}`);
  return li;
}

function show() {
  const cur = state.current;
  ui.message.textContent = "";
  if (!cur) return;
  const task = cur.task;
  renderContent(task.content);
  if (task.prelabel && !contract.hide_prelabels) {
    const p = task.prelabel;
    ui.suggestion.hidden = false;
    ui.suggestion.textContent = `Model suggests “${p.value}”, ${Math.round(p.confidence * 100)}% confident${p.calibrated ? " (calibrated)" : ""} · model ${p.model_version}`;
  } else {
    ui.suggestion.hidden = true;
  }
  renderChoices(task);
  ui.amending.hidden = !cur.amend;
  if (cur.amend) ui.amending.textContent = `Changing your last answer (it was “${state.last ? state.last.value : ""}”): pick a class and press Enter, or Esc to keep it.`;
  if (MODE === "review") renderEvidence(task.evidence);
  markChoice();
  ui.item.focus({ preventScroll: true });
}

function cell(tag, text, cls) {
  const c = document.createElement(tag);
  c.textContent = text;
  if (cls) c.className = cls;
  return c;
}

// A reviewer sees why the item is here, every vote with who cast it and its weight, and
// the posterior; a vote is accepted by pressing its class's key.
function renderEvidence(ev) {
  const box = document.getElementById("evidence");
  box.replaceChildren();
  if (!ev) { box.hidden = true; return; }
  box.hidden = false;
  if (ev.review) {
    const why = cell("p", "", "why");
    why.append(cell("strong", `In review: ${ev.review.why}. `), ev.review.detail);
    box.append(why);
  }
  box.append(cell("p", `Consensus so far: “${ev.value || "none"}”, posterior ${Math.round(ev.consensus_score * 100)}% (${ev.status})`, "muted"));
  const table = document.createElement("table");
  table.className = "table votes";
  const head = document.createElement("tr");
  for (const h of ["Annotator", "Vote", "Weight", "Source"]) head.append(cell("th", h));
  head.querySelectorAll("th").forEach((th) => th.setAttribute("scope", "col"));
  table.append(head);
  for (const v of ev.votes) {
    const row = document.createElement("tr");
    row.append(cell("td", v.annotator_id), cell("td", v.value), cell("td", v.weight ? v.weight.toFixed(2) : "–"), cell("td", v.source));
    table.append(row);
  }
  box.append(table);
  if (ev.posterior.length) {
    const list = document.createElement("ul");
    list.className = "posterior";
    list.setAttribute("aria-label", "Posterior by class");
    for (const p of ev.posterior) {
      const li = cell("li", `${p.class_label} ${Math.round(p.score * 100)}%`);
      li.style.setProperty("--share", `${Math.round(p.score * 100)}%`);
      list.append(li);
    }
    box.append(list);
  }
}

function markChoice() {
  const cur = state.current;
  const chosen = cur ? cur.value : null;
  for (const b of ui.choices.querySelectorAll(".choice")) {
    b.setAttribute("aria-pressed", String(b.dataset.value === chosen));
  }
  const ready = cur && (chosen || (cur.task.prelabel && !contract.hide_prelabels));
  ui.submit.disabled = !ready;
  ui.skip.disabled = !cur;
}

function renderStatus() {
  const s = state.session;
  ui.sessionCount.textContent = `${s.labeled} labeled, ${s.skipped} skipped this session`;
  const waiting = state.outbox.length;
  if (waiting === 0) {
    ui.saveState.textContent = "all saved";
    ui.saveState.className = "saved";
  } else if (waiting === 1 && state.outbox[0].sending) {
    ui.saveState.textContent = "saving…";
    ui.saveState.className = "held";
  } else {
    ui.saveState.textContent = `${waiting} not yet saved`;
    ui.saveState.className = "unsaved";
  }
  ui.back.disabled = !changeable();
  ui.activeTime.textContent = formatMs(s.activeMs);
}

function formatMs(ms) {
  const s = Math.round(ms / 1000);
  return s < 90 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

// -- the loop --------------------------------------------------------------------------------
let filling = false;
let waitTimer = null;

async function lease() {
  const path = MODE === "review" ? "reviews/next" : "tasks/next";
  const reply = await api("POST", `/api/projects/${encodeURIComponent(project)}/${path}`);
  if (reply.task && reply.evidence) reply.task.evidence = reply.evidence;
  return reply;
}

async function fill() {
  if (filling) return;
  filling = true;
  try {
    while (state.queue.length < PREFETCH) {
      const reply = await lease();
      if (!reply.task) break;
      state.queue.push(reply.task);
      save();
    }
  } catch (err) {
    report(err);
  } finally {
    filling = false;
  }
}

function begin(task) {
  account(performance.now());
  state.current = { task, value: null, shownAt: Date.now(), activeMs: 0 };
  if (attentive()) { lastInput = performance.now(); activeFrom = lastInput; }
  save();
  show();
}

async function advance() {
  state.queue = state.queue.filter(leaseOk);
  const next = state.queue.shift();
  if (next) {
    begin(next);
    fill();
    return;
  }
  state.current = null;
  save();
  markChoice();
  try {
    const reply = await lease();
    if (reply.task) {
      begin(reply.task);
      fill();
    } else {
      waiting(reply.retry_after_ms || 2000);
    }
  } catch (err) {
    report(err);
    if (err.status === 0 || err.status >= 500) waiting(3000);
  }
}

function waiting(ms) {
  ui.item.replaceChildren();
  const p = document.createElement("p");
  p.className = "muted";
  p.textContent = `${MODE === "review" ? "Nothing in review" : "No task for you"} right now. Checking again in ${Math.ceil(ms / 1000)} s.`;
  ui.item.append(p);
  ui.suggestion.hidden = true;
  ui.choices.replaceChildren();
  if (MODE === "review") renderEvidence(null);
  clearTimeout(waitTimer);
  waitTimer = setTimeout(advance, ms);
}

function choose(value) {
  if (!state.current) return;
  state.current.value = value;
  save();
  markChoice();
}

function submit() {
  const cur = state.current;
  if (!cur) return;
  const value = cur.value || (cur.task.prelabel && !contract.hide_prelabels ? cur.task.prelabel.value : null);
  if (!value) return;
  account(performance.now());
  if (cur.amend) { amend(cur, value); return; }
  const now = Date.now();
  const entry = {
    kind: "label",
    task: cur.task,
    value,
    client_label_id: crypto.randomUUID(),
    duration_ms: Math.max(0, now - cur.shownAt),
    active_ms: Math.round(Math.min(cur.activeMs, Math.max(0, now - cur.shownAt))),
  };
  state.outbox.push(entry);
  state.last = MODE === "review" ? null : {
    task: cur.task, value, client_label_id: entry.client_label_id, revision: 0, activeMs: cur.activeMs,
  };
  state.session.labeled += 1;
  save();
  advance();
  renderStatus();
  flush();
}

// -- changing the last answer ------------------------------------------------------------------
const changeable = () => MODE !== "review" && state.last !== null && leaseOk(state.last.task)
  && !(state.current && state.current.amend);

function changeLast() {
  if (!changeable()) {
    if (state.last && !leaseOk(state.last.task)) {
      ui.message.textContent = "Your last answer can no longer be changed: its task's lease has run out.";
    }
    return;
  }
  const last = state.last;
  state.resume = state.current;
  state.current = { task: last.task, value: last.value, shownAt: Date.now(), activeMs: last.activeMs, amend: true };
  save();
  show();
  renderStatus();
}

function amend(cur, value) {
  const last = state.last;
  const activeMs = Math.round(cur.activeMs);
  // Not sent yet: send the new answer instead. Sent: send a change of it.
  // Only a request never tried may change: one tried may have landed as it was.
  const queued = [...state.outbox].reverse().find((e) => !e.tried
    && (e.client_label_id === last.client_label_id || e.amends === last.client_label_id));
  if (queued) {
    queued.value = value;
    queued.active_ms = activeMs;
  } else if (value !== last.value) {
    state.outbox.push({ kind: "amend", amends: last.client_label_id, task: last.task, value, revision: last.revision, active_ms: activeMs });
    last.revision += 1;
  }
  last.value = value;
  last.activeMs = activeMs;
  resume();
  renderStatus();
  flush();
}

function resume() {
  const back = state.resume;
  state.resume = null;
  state.current = null;
  if (back && leaseOk(back.task)) {
    state.current = back;
    save();
    show();
  } else {
    advance();
  }
}

async function skip() {
  const cur = state.current;
  if (!cur) return;
  if (cur.amend) { resume(); return; }
  state.session.skipped += 1;
  save();
  advance();
  renderStatus();
  try {
    await api("POST", `/api/tasks/${encodeURIComponent(cur.task.task_id)}/skip`, { reason: "skipped in the workbench" });
  } catch (err) {
    if (err.status !== 404) report(err);
  }
}

// -- the outbox ------------------------------------------------------------------------------
let flushing = false;
let retryMs = 1000;
let flushTimer = null;

async function flush() {
  if (flushing) return;
  flushing = true;
  clearTimeout(flushTimer);
  let again = null;
  try {
    // Offline, nothing is tried (so an answer can still be changed in place); the
    // browser's "online" event sends what waits.
    while (state.outbox.length && navigator.onLine !== false) {
      const entry = state.outbox[0];
      entry.sending = true;
      entry.tried = true;
      save();
      try {
        const path = `/api/tasks/${encodeURIComponent(entry.task.task_id)}/label`;
        if (entry.kind === "amend") {
          await api("PUT", path, { value: entry.value, revision: entry.revision, active_ms: entry.active_ms });
        } else {
          await api("POST", path, {
            value: entry.value,
            client_label_id: entry.client_label_id,
            duration_ms: entry.duration_ms,
            active_ms: entry.active_ms,
          });
        }
        state.outbox.shift();
        retryMs = 1000;
      } catch (err) {
        entry.sending = false;
        if (err.status === 0 || err.status === 429 || err.status >= 500) {
          again = retryMs;
          retryMs = Math.min(retryMs * 2, 15000);
          report(err);
          break;
        }
        if (err.status === 401) break;  // signing in again resends it
        // Refused for good (the lease ran out, the task was reassigned): say so plainly.
        state.outbox.shift();
        const mine = entry.amends || entry.client_label_id;
        if (state.last && state.last.client_label_id === mine) state.last = null;
        ui.message.textContent = entry.kind === "amend"
          ? `Your change to “${entry.value}” was not saved: ${err.message}`
          : `An answer (“${entry.value}”) was not saved: ${err.message}`;
      }
      save();
      renderStatus();
    }
  } finally {
    flushing = false;
    save();
    renderStatus();
    if (again !== null) flushTimer = setTimeout(flush, again);
  }
}

function report(err) {
  ui.message.textContent = err.status === 403
    ? `${err.message}`
    : err.message;
}

// -- time on task: only while the page is focused and the person active ----------------------
// Active stretches start at an input (or the task's arrival) with the page visible and
// focused, and end at blur, hiding, or IDLE_MS after the last input; each is added to the
// task in hand when it ends, so no tick's granularity is lost.
let lastInput = performance.now();
let activeFrom = null;
const attentive = () => document.visibilityState === "visible" && document.hasFocus();

function account(now) {
  if (activeFrom !== null && state.current) {
    const end = Math.min(now, lastInput + IDLE_MS);
    if (end > activeFrom) {
      state.current.activeMs += end - activeFrom;
      state.session.activeMs += end - activeFrom;
    }
  }
  activeFrom = attentive() && now - lastInput < IDLE_MS ? now : null;
}

for (const type of ["keydown", "pointerdown", "pointermove", "wheel", "touchstart", "scroll"]) {
  window.addEventListener(type, () => {
    const now = performance.now();
    account(now);
    lastInput = now;
    if (attentive()) activeFrom = now;
  }, { passive: true, capture: true });
}
for (const type of ["focus", "blur"]) window.addEventListener(type, () => account(performance.now()));
setInterval(() => { account(performance.now()); save(); renderStatus(); }, 2000);

// -- keys ------------------------------------------------------------------------------------
function toggleHelp(open) {
  const show = open === undefined ? ui.instructions.hidden : open;
  ui.instructions.hidden = !show;
  ui.help.setAttribute("aria-expanded", String(show));
  if (show) ui.instructions.focus(); else ui.item.focus({ preventScroll: true });
}

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target;
  if (target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement) return;
  if (event.key === "?") { event.preventDefault(); toggleHelp(); return; }
  if (event.key === "Escape") {
    if (!ui.instructions.hidden) { toggleHelp(false); return; }
    if (state.current && state.current.amend) { event.preventDefault(); resume(); renderStatus(); }
    return;
  }
  if (event.key === "Enter") {
    // Enter on a focused choice picks it before submitting; on other buttons it clicks.
    if (target instanceof HTMLButtonElement && !target.classList.contains("choice") && target !== ui.submit) return;
    event.preventDefault();
    if (target instanceof HTMLButtonElement && target.classList.contains("choice")) choose(target.dataset.value);
    submit();
    return;
  }
  if (event.key === "S" && event.shiftKey) { event.preventDefault(); skip(); return; }
  if (event.key === "Backspace") { event.preventDefault(); changeLast(); return; }
  const choice = [...ui.choices.querySelectorAll(".choice")].find((b) => b.dataset.key === event.key.toLowerCase());
  if (choice) { event.preventDefault(); choose(choice.dataset.value); }
});
ui.submit.addEventListener("click", submit);
ui.skip.addEventListener("click", skip);
ui.back.addEventListener("click", changeLast);
ui.help.addEventListener("click", () => toggleHelp());
document.addEventListener("visibilitychange", () => {
  account(performance.now());
  if (document.visibilityState === "hidden") save();
});
window.addEventListener("online", flush);

async function loadProgress() {
  if (MODE === "review") return;
  try {
    const p = await api("GET", `/api/projects/${encodeURIComponent(project)}/progress`);
    ui.totalLabels.textContent = String(p.labels);
    ui.agreement.textContent = p.agreement_with_consensus === null ? "–" : `${Math.round(p.agreement_with_consensus * 100)}%`;
    ui.medianTime.textContent = p.median_seconds === null ? "–" : `${p.median_seconds.toFixed(1)} s`;
  } catch (err) { /* progress is a nicety; the work goes on */ }
}

// -- start -----------------------------------------------------------------------------------
state.queue = state.queue.filter(leaseOk);
if (state.current && state.current.amend && !leaseOk(state.current.task)) {
  resume();
} else if (state.current && leaseOk(state.current.task)) {
  show();
  fill();
} else {
  advance();
}
renderStatus();
flush();
loadProgress();
setInterval(loadProgress, 30000);
