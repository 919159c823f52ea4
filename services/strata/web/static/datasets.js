// The console's Import panel: the chosen file goes to /api/projects/{p}/imports/{kind}
// (multipart, with the CSRF token), and the page shows what the import did and the first
// lines it could not take, by number. A new kind of import is an <option> (its value names
// the route) and its help paragraph; its counts show here by their names. The Export panel
// needs no script: it is a plain GET form whose answer the browser downloads.
import { upload } from "./api.js";

const SHOWN_ERRORS = 20;
// Names for the counts an import answers with; any other count shows under its own key.
const COUNTS = {
  imported: "imported",
  gold: "gold",
  exact_duplicates: "exact duplicates",
  near_duplicates: "near duplicates",
  rejected: "lines refused",
  received: "rows read",
  already: "imported before",
  items: "items answered",
  accepted: "items accepted",
};

const form = document.getElementById("import-form");
const kind = document.getElementById("import-kind");
const file = document.getElementById("import-file");
const modelField = document.getElementById("import-model-field");
const model = document.getElementById("import-model");
const status = document.getElementById("import-status");
const result = document.getElementById("import-result");
const counts = document.getElementById("import-counts");
const problems = document.getElementById("import-problems");
const errorRows = document.querySelector("#import-errors tbody");
const caption = document.getElementById("import-errors-caption");
const project = decodeURIComponent(window.location.pathname.split("/")[2]);

function chooseKind() {
  const option = kind.selectedOptions[0];
  file.accept = option ? option.dataset.accept || "" : "";
  const needsModel = Boolean(option && option.dataset.model);
  modelField.hidden = !needsModel;
  for (const help of document.querySelectorAll("#import-help [data-kind]")) {
    help.hidden = help.dataset.kind !== kind.value;
  }
  result.hidden = true;
}

function size(bytes) {
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

function show(data) {
  counts.replaceChildren();
  for (const [key, value] of Object.entries(data)) {
    if (typeof value !== "number") continue;
    const tile = document.createElement("div");
    tile.className = "tile";
    tile.setAttribute("role", "listitem");
    tile.dataset.count = key;
    const n = document.createElement("span");
    n.className = "n";
    n.textContent = String(value);
    tile.append(n, COUNTS[key] || key.replaceAll("_", " "));
    counts.append(tile);
  }
  const errors = data.errors || [];
  const refused = typeof data.rejected === "number" ? data.rejected : errors.length;
  errorRows.replaceChildren();
  for (const e of errors.slice(0, SHOWN_ERRORS)) {
    const row = document.createElement("tr");
    row.dataset.line = String(e.line);
    const line = document.createElement("th");
    line.scope = "row";
    line.className = "num";
    line.textContent = e.line > 0 ? String(e.line) : "file";
    const message = document.createElement("td");
    message.textContent = e.message;
    row.append(line, message);
    errorRows.append(row);
  }
  caption.textContent = refused > SHOWN_ERRORS
    ? `The first ${SHOWN_ERRORS} of ${refused} lines refused; the others were imported.`
    : `${plural(refused, "line", "lines")} refused; the others were imported.`;
  problems.hidden = errors.length === 0;
  result.hidden = false;
}

kind.addEventListener("change", chooseKind);
chooseKind();

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const chosen = file.files && file.files[0];
  if (!chosen) {
    status.className = "message";
    status.textContent = "choose a file first";
    file.focus();
    return;
  }
  if (!modelField.hidden && !model.value.trim()) {
    status.className = "message";
    status.textContent = "name the model the predictions came from";
    model.focus();
    return;
  }
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  form.setAttribute("aria-busy", "true");
  result.hidden = true;
  status.className = "message busy";
  status.textContent = `Importing ${chosen.name} (${size(chosen.size)})…`;
  const body = new FormData();
  body.append("file", chosen, chosen.name);
  try {
    const data = await upload(
      `/api/projects/${encodeURIComponent(project)}/imports/${encodeURIComponent(kind.value)}`
      + (modelField.hidden ? "" : `?model=${encodeURIComponent(model.value.trim())}`), body);
    const refused = typeof data.rejected === "number" ? data.rejected : 0;
    status.className = refused ? "message warn" : "message ok";
    status.textContent = `${chosen.name}: ${typeof data.imported === "number" ? data.imported : 0} imported`
      + (refused ? `, ${plural(refused, "line", "lines")} refused (below).` : ".");
    show(data);
    file.value = "";
  } catch (err) {
    status.className = "message";
    status.textContent = `${chosen.name} was not imported: ${err.message}`;
  } finally {
    button.disabled = false;
    form.removeAttribute("aria-busy");
  }
});
