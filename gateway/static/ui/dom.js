// Small DOM helpers: element building, notices, field errors, confirmation.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2).toLowerCase(), value);
    else if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// A visible notice for every action; polite for success, assertive for failures. A notice
// belongs to the screen it was raised on: the next screen clears it, unless it was raised with
// `{ carry: true }` just before the code itself moves on ("saved", then back to the list).
let noticeTimer = null;
let carryNotice = false;
export function notify(message, kind = "ok", { carry = false } = {}) {
  carryNotice = carry;
  const region = document.getElementById(kind === "error" ? "alert" : "status");
  const other = document.getElementById(kind === "error" ? "status" : "alert");
  other.textContent = "";
  other.hidden = true;
  region.textContent = message;
  region.hidden = false;
  region.className = `notice notice-${kind}`;
  clearTimeout(noticeTimer);
  if (kind !== "error") {
    noticeTimer = setTimeout(() => {
      region.hidden = true;
    }, 6000);
  }
}

// Called by the router on every screen change.
export function noticesForNewScreen() {
  if (carryNotice) carryNotice = false;
  else clearNotices();
}

export function clearNotices() {
  for (const id of ["status", "alert"]) {
    const region = document.getElementById(id);
    region.textContent = "";
    region.hidden = true;
  }
}

// A labelled field: <div class="field"><label>…</label>input<p hint/><p error/></div>.
// `name` is the API's field path (config.pixel_code), so a 422 finds its field.
let fieldCount = 0;
export function field(label, input, { name, hint } = {}) {
  const id = input.id || `f${++fieldCount}`;
  input.id = id;
  if (name) input.dataset.field = name;
  const described = [];
  const hintEl = hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null;
  if (hintEl) described.push(hintEl.id);
  const errorEl = h("p", { class: "field-error", id: `${id}-error`, hidden: true });
  if (described.length) input.setAttribute("aria-describedby", described.join(" "));
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hintEl, errorEl);
}

export function clearFieldErrors(form) {
  for (const el of form.querySelectorAll(".field-error")) {
    el.textContent = "";
    el.hidden = true;
  }
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  const formError = form.querySelector(".form-error");
  if (formError) {
    formError.textContent = "";
    formError.hidden = true;
  }
}

// Put an API error next to the field it names (allowed_origins[1] finds allowed_origins),
// else at the top of the form; focus it either way.
export function showError(form, error) {
  clearFieldErrors(form);
  const path = error.field || "";
  const candidates = [path, path.replace(/\[\d+\]$/, ""), path.split(".")[0]];
  let input = null;
  for (const name of candidates) {
    if (!name) continue;
    input = form.querySelector(`[data-field="${CSS.escape(name)}"]`);
    if (input) break;
  }
  if (input) {
    const errorEl = document.getElementById(`${input.id}-error`);
    errorEl.textContent = error.message;
    errorEl.hidden = false;
    input.setAttribute("aria-invalid", "true");
    const described = new Set((input.getAttribute("aria-describedby") || "").split(" ").filter(Boolean));
    described.add(errorEl.id);
    input.setAttribute("aria-describedby", [...described].join(" "));
    input.focus();
  } else {
    const formError = form.querySelector(".form-error");
    formError.textContent = error.message;
    formError.hidden = false;
    formError.focus();
  }
  notify(`Not saved: ${error.message}`, "error");
}

// A modal confirmation (<dialog>: focus moves in, Escape cancels). Resolves true or false.
export function confirmAction(message, confirmLabel = "Delete", extra = null) {
  return new Promise((resolve) => {
    const dialog = h(
      "dialog",
      { class: "confirm", "aria-labelledby": "confirm-text" },
      h("p", { id: "confirm-text" }, message),
      extra,
      h(
        "form",
        { method: "dialog", class: "actions" },
        h("button", { value: "cancel", class: "secondary", autofocus: true }, "Cancel"),
        h("button", { value: "confirm", class: "danger" }, confirmLabel),
      ),
    );
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "confirm");
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

export function formatTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return date.toLocaleString(undefined, {
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
}

// Today's events need only the time of day; older ones get their date too.
export function formatClock(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  const time = date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  if (date.toDateString() === new Date().toDateString()) return time;
  return `${date.toLocaleDateString(undefined, { month: "short", day: "numeric" })} ${time}`;
}

export function pretty(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

// Run an action with its button disabled, a notice on success and on failure.
export async function act(button, action, success) {
  if (button) button.disabled = true;
  try {
    const result = await action();
    if (success) notify(typeof success === "function" ? success(result) : success);
    return result;
  } catch (error) {
    notify(error.message, "error");
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}
