// The sign-out button in the top bar.
import { api } from "./api.js";

const button = document.getElementById("sign-out");
if (button) {
  button.addEventListener("click", async () => {
    try { await api("DELETE", "/api/session"); } finally { window.location.assign("/signin"); }
  });
}
