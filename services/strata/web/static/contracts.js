// Contract import: a file or pasted text goes to the gateway as a new version (it
// validates, refuses a changed version, and audits); the page then shows the list anew.
import { api } from "./api.js";

const form = document.getElementById("import-contract");
const file = document.getElementById("contract-file");
const text = document.getElementById("contract-document");
const message = document.getElementById("contract-message");
const project = decodeURIComponent(window.location.pathname.split("/")[2]);

file.addEventListener("change", async () => {
  const chosen = file.files && file.files[0];
  if (!chosen) return;
  if (chosen.size > 1_000_000) {
    message.textContent = "that file is over 1 MB: a contract is a page of YAML";
    return;
  }
  text.value = await chosen.text();
  text.focus();
});

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  message.className = "message";
  message.textContent = "";
  try {
    const loaded = await api("POST", `/api/projects/${encodeURIComponent(project)}/contracts`,
      { document: text.value });
    message.className = "message ok";
    message.textContent = `Loaded version ${loaded.version}.`;
    setTimeout(() => window.location.reload(), 600);
  } catch (err) {
    message.textContent = err.message;
    button.disabled = false;
  }
});
