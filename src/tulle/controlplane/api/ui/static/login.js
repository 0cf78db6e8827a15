// The token goes in an Authorization header, never in a URL or a body; the answer sets the
// session cookie (HttpOnly: no script reads it).
"use strict";
document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = document.getElementById("token").value.trim();
  const response = await fetch("/ui/session", {method: "POST", credentials: "same-origin",
    headers: {Authorization: "Bearer " + token}});
  if (response.ok) { window.location = "/ui/"; return; }
  const body = await response.json().catch(() => ({}));
  document.getElementById("error").textContent =
    body.error ? `${body.error.message}: ${body.error.hint || ""}` : response.statusText;
});
