// The management UI: sign-in, then one screen per section, chosen by the URL's hash.
// Everything shown comes from the Management API; nothing is kept but the admin token,
// and that only in this tab's sessionStorage.

import { request, token, whenUnauthorized } from "./api.js";
import { clear, clearNotices, h, noticesForNewScreen, notify } from "./dom.js";
import { leave } from "./shared.js";
import { showDestinationForm, showIntegrations, showIntegrationForm, showVendorChoice } from "./integrations.js";
import { showSources, showSourceForm } from "./sources.js";
import { showDeadLetters } from "./deadletters.js";
import { showDebugger } from "./debugger.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const signOutButton = document.getElementById("sign-out");

const routes = [
  [/^#\/integrations\/new$/, () => showVendorChoice(main)],
  [/^#\/integrations\/new\/tiktok$/, () => showIntegrationForm(main, null)],
  [/^#\/integrations\/new\/([\w-]+)$/, (vendor) => showDestinationForm(main, vendor, null)],
  // ?field=config.access_token: open the form on the field that fixes a paused integration.
  [/^#\/integrations\/([\w-]+)(?:\?field=([\w.]+))?$/, (id, fieldName) => showIntegrationForm(main, id, fieldName)],
  [/^#\/sources\/new$/, () => showSourceForm(main, null)],
  [/^#\/sources\/([\w-]+)$/, (id) => showSourceForm(main, id)],
  [/^#\/sources$/, () => showSources(main)],
  [/^#\/dead-letters(?:\/([\w-]+))?$/, (id) => showDeadLetters(main, id)],
  [/^#\/debugger$/, () => showDebugger(main)],
  [/^#\/integrations$/, () => showIntegrations(main)],
];

async function route() {
  leave();
  noticesForNewScreen();
  if (!token.get()) {
    showSignIn();
    return;
  }
  nav.hidden = false;
  signOutButton.hidden = false;
  const hash = location.hash || "#/integrations";
  for (const link of nav.querySelectorAll("a")) {
    const current = hash.startsWith(`#/${link.dataset.section}`);
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  for (const [pattern, show] of routes) {
    const match = hash.match(pattern);
    if (match) {
      try {
        await show(...match.slice(1));
      } catch (error) {
        clear(main, h("h1", { tabindex: "-1" }, "Something went wrong"), h("p", {}, error.message));
        notify(error.message, "error");
      }
      const heading = main.querySelector("h1");
      // A screen opened on the field to fix (?field=) keeps that focus.
      if (heading && !document.activeElement?.hasAttribute("data-focus-asked")) {
        heading.setAttribute("tabindex", "-1");
        heading.focus({ preventScroll: true });
      }
      return;
    }
  }
  location.hash = "#/integrations";
}

function showSignIn(message) {
  nav.hidden = true;
  signOutButton.hidden = true;
  const input = h("input", {
    type: "password",
    id: "admin-token",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
  });
  const error = h("p", { class: "field-error", id: "admin-token-error", role: "alert", hidden: true });
  input.setAttribute("aria-describedby", "admin-token-hint admin-token-error");
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    { class: "card sign-in", "aria-labelledby": "sign-in-title" },
    h("h1", { id: "sign-in-title" }, "Sign in"),
    h(
      "div",
      { class: "field" },
      h("label", { for: "admin-token" }, "Admin token"),
      input,
      h(
        "p",
        { class: "hint", id: "admin-token-hint" },
        "The gateway printed it on its first start (also in data/admin_token), or it is set in GATEWAY_ADMIN_TOKEN. It is kept for this browser tab only.",
      ),
      error,
    ),
    button,
  );
  if (message) {
    error.textContent = message;
    error.hidden = false;
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const candidate = input.value.trim();
    error.hidden = true;
    if (!candidate) {
      error.textContent = "Enter the admin token.";
      error.hidden = false;
      input.focus();
      return;
    }
    button.disabled = true;
    try {
      await request("GET", "/v1/admin/sources", undefined, candidate);
      token.set(candidate);
      notify("Signed in.", "ok", { carry: true });
      if (!location.hash || location.hash === "#/sign-in") location.hash = "#/integrations";
      else route();
    } catch (failure) {
      error.textContent =
        failure.status === 401 ? "That admin token is not valid." : failure.message;
      error.hidden = false;
      input.setAttribute("aria-invalid", "true");
      input.select();
      input.focus();
    } finally {
      button.disabled = false;
    }
  });
  clear(main, form);
  input.focus();
}

signOutButton.addEventListener("click", () => {
  leave();
  token.clear();
  clearNotices();
  showSignIn();
  notify("Signed out.");
});

whenUnauthorized(() => {
  leave();
  token.clear();
  showSignIn("The admin token is no longer accepted; sign in again.");
});

window.addEventListener("hashchange", route);
route();

