// The operator console: block or unblock a member (the gateway audits it), then reload
// the table so every number shown is the services' own.
import { api } from "./api.js";

const main = document.getElementById("annotators");
const message = document.getElementById("console-message");
const project = decodeURIComponent(window.location.pathname.split("/")[2]);

main.addEventListener("click", async (event) => {
  const button = event.target.closest("button.set-status");
  if (!button) return;
  const who = button.dataset.annotator;
  const status = button.dataset.status;
  button.disabled = true;
  try {
    await api("POST", `/api/projects/${encodeURIComponent(project)}/annotators/${encodeURIComponent(who)}/status`,
      { status, reason: status === "blocked" ? "blocked by a manager in the console" : "" });
    window.location.reload();
  } catch (err) {
    message.textContent = err.message;
    button.disabled = false;
  }
});
