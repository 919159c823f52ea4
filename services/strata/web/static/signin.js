// Sign in with a token, or with the code of a sign-in link (carried in the fragment,
// which browsers never send to a server, so it stays out of every log).
import { api } from "./api.js";

const form = document.getElementById("signin");
const error = document.getElementById("signin-error");

async function signIn(path, body) {
  error.textContent = "";
  try {
    await api("POST", path, body);
    window.location.assign("/projects");
  } catch (err) {
    error.textContent = err.status === 401
      ? "That did not work: " + err.message
      : err.message;
    form.hidden = false;
    document.getElementById("token").focus();
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const token = document.getElementById("token").value.trim();
  if (token) signIn("/api/session", { token });
});

const fragment = new URLSearchParams(window.location.hash.slice(1));
const code = fragment.get("code");
if (code) {
  history.replaceState(null, "", window.location.pathname);
  document.getElementById("link-note").hidden = false;
  form.hidden = true;
  signIn("/api/session/link", { code });
}
