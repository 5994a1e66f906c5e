// Integrations: the list with each one's delivery status, the TikTok Events API form, and a
// form built from the registry's description for every other destination.

import { api } from "./api.js";
import {
  act,
  clear,
  clearFieldErrors,
  confirmAction,
  field,
  formatTime,
  h,
  notify,
  pretty,
  showError,
} from "./dom.js";
import { activityPanel, drawCompact, windowSwitch } from "./activity.js";
import { knownCategories, onLeave, sourcesAndIntegrations } from "./shared.js";
import { openReprocessDialog } from "./reprocess.js";

const REFRESH_MS = 10000;
const CHARTS_REFRESH_MS = 30000; // a chart's smallest bucket is a minute

function stateBadge(integration) {
  const { state, paused_reason: reason } = integration.status;
  const label = { active: "Active", paused: "Paused", disabled: "Disabled" }[state] || state;
  return h(
    "span",
    { class: `badge badge-${state}` },
    label,
    state === "paused" && reason ? h("span", { class: "why" }, `: ${reason}`) : null,
  );
}

// A pause the destination caused says what went wrong, the fix and where to make it.
function pauseHint(integration, { link = true } = {}) {
  const hint = integration.status.pause_hint;
  if (!hint) return null;
  const requests = hint.failed_requests;
  return h(
    "p",
    { class: "pause-hint", "data-pause-hint": integration.id },
    hint.message,
    requests ? ` ${requests} request${requests === 1 ? "" : "s"} refused so far; the events wait and are sent once it is fixed.` : "",
    link && hint.field
      ? [" ", h("a", { href: `#/integrations/${integration.id}?field=${hint.field}` }, fieldLabel(hint.field))]
      : null,
  );
}

function fieldLabel(path) {
  return path === "config.access_token" ? "Paste a new access token" : `Fix ${path}`;
}

// What the Last error column says: the pause's own reason when the queue has none.
function lastError(status) {
  return status.last_error || (status.pause_hint ? status.paused_reason : null) || "—";
}

// Resume, after a warning when the destination is expected to refuse again at once.
async function resume(integration, button) {
  const hint = integration.status.pause_hint;
  if (hint && hint.resume_expected_to_fail) {
    const sure = await confirmAction(
      `${hint.message} Resuming without that fix will most likely pause ${integration.name} again at its next request.`,
      "Resume anyway",
      hint.field ? h("p", {}, h("a", { href: `#/integrations/${integration.id}?field=${hint.field}` }, fieldLabel(hint.field))) : null,
    );
    if (!sure) {
      notify(`${integration.name} stays paused.`);
      return false;
    }
  }
  await act(button, () => api.post(`/v1/admin/integrations/${integration.id}/resume`), `${integration.name} resumed.`);
  return true;
}

export async function showIntegrations(main) {
  const heading = h("h1", {}, "Integrations");
  const body = h("div", { class: "table-wrap stacked" });
  const refresh = h("button", { type: "button", class: "secondary" }, "Refresh");
  const activity = h("section", { class: "card activity", id: "activity", "aria-labelledby": "activity-title", hidden: true });
  let chartHours = 1;
  clear(
    main,
    h(
      "div",
      { class: "title-row" },
      heading,
      h("div", { class: "actions" }, refresh, h("a", { class: "button", href: "#/integrations/new" }, "Add Integration")),
    ),
    body,
    activity,
  );

  // Each integration's events by outcome over the last hour or day, side by side.
  async function drawActivity() {
    const { integrations } = await sourcesAndIntegrations();
    activity.hidden = !integrations.length;
    if (!integrations.length) return;
    const cards = integrations.map((integration) => h("div", { class: "activity-item", "data-integration": integration.id }));
    clear(
      activity,
      h(
        "div",
        { class: "title-row" },
        h("h2", { id: "activity-title" }, "Activity"),
        windowSwitch(chartHours, (value) => {
          chartHours = value;
          drawActivity().catch((error) => notify(error.message, "error"));
        }),
      ),
      h("div", { class: "charts" }, cards),
    );
    await Promise.all(integrations.map((integration, i) => drawCompact(cards[i], integration, chartHours)));
  }

  async function draw() {
    const { sources, integrations } = await sourcesAndIntegrations();
    const sourceNames = new Map(sources.map((s) => [s.id, s.name]));
    if (!integrations.length) {
      clear(
        body,
        h(
          "div",
          { class: "empty card" },
          h("p", {}, "No integration yet."),
          sources.length
            ? h("a", { class: "button", href: "#/integrations/new" }, "Add Integration")
            : h("p", {}, "First ", h("a", { href: "#/sources/new" }, "add a source"), " (the site that sends hits), then its integration."),
        ),
      );
      return;
    }
    const rows = integrations.map((integration) => {
      const s = integration.status;
      const name = integration.name;
      const toggleEnabled = h(
        "button",
        { type: "button", class: "secondary", "aria-label": `${integration.enabled ? "Disable" : "Enable"} ${name}` },
        integration.enabled ? "Disable" : "Enable",
      );
      toggleEnabled.addEventListener("click", () =>
        act(
          toggleEnabled,
          () => api.patch(`/v1/admin/integrations/${integration.id}`, { enabled: !integration.enabled }),
          `${name} ${integration.enabled ? "disabled" : "enabled"}.`,
        ).then(draw),
      );
      const paused = s.state === "paused";
      const togglePause = h(
        "button",
        { type: "button", class: "secondary", "aria-label": `${paused ? "Resume" : "Pause"} ${name}` },
        paused ? "Resume" : "Pause",
      );
      togglePause.addEventListener("click", async () => {
        if (paused) {
          if (await resume(integration, togglePause)) await draw();
          return;
        }
        await act(togglePause, () => api.post(`/v1/admin/integrations/${integration.id}/pause`), `${name} paused.`);
        await draw();
      });
      const remove = h("button", { type: "button", class: "danger", "aria-label": `Delete ${name}` }, "Delete");
      remove.addEventListener("click", async () => {
        const sure = await confirmAction(
          `Delete the integration “${name}”? Its queued events and dead letters are dropped; TikTok keeps what it already received.`,
        );
        if (!sure) {
          notify("Nothing was deleted.");
          return;
        }
        await act(remove, () => api.del(`/v1/admin/integrations/${integration.id}`), `${name} deleted.`);
        draw();
      });
      return h(
        "tr",
        { "data-integration": integration.id },
        h(
          "th",
          { scope: "row" },
          h("a", { href: `#/integrations/${integration.id}` }, name),
          h("div", { class: "sub" }, `${sourceNames.get(integration.source_id) || integration.source_id} · ${where(integration)}`),
        ),
        h("td", { "data-label": "Status" }, stateBadge(integration), pauseHint(integration)),
        h("td", { class: "num", "data-label": "Queued" }, s.queued),
        h("td", { class: "num", "data-label": "Delivered" }, s.delivered),
        h(
          "td",
          { class: "num", "data-label": "Failed" },
          s.failed,
          s.pause_hint && s.pause_hint.failed_requests
            ? h("div", { class: "sub" }, `${s.pause_hint.failed_requests} request${s.pause_hint.failed_requests === 1 ? "" : "s"} refused`)
            : null,
        ),
        h(
          "td",
          { class: "num", "data-label": "Dead-lettered" },
          s.dead_lettered ? h("a", { href: `#/dead-letters/${integration.id}` }, s.dead_lettered) : "0",
        ),
        h("td", { class: "error-text", "data-label": "Last error" }, lastError(s)),
        h("td", { "data-label": "Last success" }, formatTime(s.last_success_at)),
        h(
          "td",
          { class: "row-actions" },
          h("a", { class: "button secondary", href: `#/integrations/${integration.id}`, "aria-label": `Edit ${name}` }, "Edit"),
          toggleEnabled,
          integration.enabled ? togglePause : null,
          remove,
        ),
      );
    });
    clear(
      body,
      h(
        "table",
        { class: "list stacked", id: "integrations" },
        h("caption", { class: "visually-hidden" }, "Integrations and their delivery status"),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["Integration", "Status", "Queued", "Delivered", "Failed", "Dead-lettered", "Last error", "Last success", "Actions"].map(
              (label) => h("th", { scope: "col" }, label),
            ),
          ),
        ),
        h("tbody", {}, rows),
      ),
    );
  }

  refresh.addEventListener("click", () => act(refresh, () => Promise.all([draw(), drawActivity()]), "Integrations refreshed."));
  await draw();
  drawActivity().catch((error) => notify(error.message, "error"));
  const timer = setInterval(() => draw().catch(() => {}), REFRESH_MS);
  const chartsTimer = setInterval(() => drawActivity().catch(() => {}), CHARTS_REFRESH_MS);
  onLeave(() => {
    clearInterval(timer);
    clearInterval(chartsTimer);
  });
}

// What the list says an integration delivers to.
function where(integration) {
  if (integration.vendor === "tiktok") return `pixel ${integration.config.pixel_code}`;
  return `${integration.vendor} ${integration.config.url || ""}`.trim();
}

// The destinations come from the gateway's registry: one card each.
export async function showVendorChoice(main) {
  const { destinations } = await api.get("/v1/admin/destinations");
  clear(
    main,
    h("h1", {}, "Add Integration"),
    h("p", {}, "Where should events go?"),
    h(
      "ul",
      { class: "vendors" },
      destinations.map((d) =>
        h(
          "li",
          {},
          h(
            "a",
            { class: "vendor card", href: `#/integrations/new/${d.vendor}` },
            h("strong", {}, d.vendor === "tiktok" ? "TikTok Events API" : d.label),
            h("span", {}, d.description),
          ),
        ),
      ),
    ),
    h("a", { href: "#/integrations" }, "Back to integrations"),
  );
}

const INPUT_TYPES = { text: "text", url: "url", secret: "password", number: "number", integer: "number" };

// A destination other than TikTok: its form is the registry's field list.
export async function showDestinationForm(main, vendor, current) {
  const { destinations } = await api.get("/v1/admin/destinations");
  const destination = destinations.find((d) => d.vendor === vendor);
  if (!destination) throw new Error(`This gateway has no destination “${vendor}”.`);
  const { sources } = await sourcesAndIntegrations();
  const creating = current === null;
  const config = current ? current.config : {};
  if (creating && !sources.length) {
    clear(main, h("h1", {}, destination.label), h("p", { class: "card" }, "Add a source first: ", h("a", { href: "#/sources/new" }, "Add a source")));
    return;
  }
  const source = h("select", { required: true, disabled: !creating });
  for (const s of sources) source.append(h("option", { value: s.id }, `${s.name} (${s.id})`));
  source.value = current ? current.source_id : sources[0].id;
  const name = h("input", { type: "text", value: current ? current.name : destination.label, required: true });
  const enabled = h("input", { type: "checkbox", checked: current ? current.enabled : true });
  const inputs = new Map();
  const fields = destination.form
    .filter((f) => f.kind !== "mapping")
    .map((f) => {
      let input;
      if (f.kind === "boolean") {
        input = h("input", { type: "checkbox", checked: !!config[f.name] });
      } else {
        // A secret is write-only: never filled in; the API's mask says one is saved.
        const value = f.kind === "secret" || config[f.name] == null ? "" : String(config[f.name]);
        input = h("input", { type: INPUT_TYPES[f.kind] || "text", value, autocomplete: "off", spellcheck: "false", step: f.kind === "number" ? "any" : undefined });
        if (f.kind === "secret" && config[f.name]) input.placeholder = `${config[f.name]} (saved; type a new one to replace it)`;
        if (f.required && !(f.kind === "secret" && !creating)) input.required = true;
      }
      inputs.set(f.name, [f, input]);
      return f.kind === "boolean"
        ? h("div", { class: "field check-field" }, h("label", { class: "check" }, input, f.label))
        : field(f.label, input, { name: `config.${f.name}`, hint: f.hint });
    });

  const valueOf = (f, input) => {
    if (f.kind === "boolean") return input.checked;
    const text = input.value.trim();
    if (text === "") return null;
    return f.kind === "number" || f.kind === "integer" ? Number(text) : text;
  };
  const save = h("button", { type: "submit" }, "Save");
  const form = h(
    "form",
    { class: "card form", novalidate: true, "data-vendor": vendor },
    h("p", { class: "form-error", role: "alert", tabindex: "-1", hidden: true }),
    field("Source", source, { name: "source_id" }),
    field("Name", name, { name: "name" }),
    ...fields,
    h("div", { class: "field check-field" }, h("label", { class: "check" }, enabled, "Enabled")),
    h("div", { class: "actions" }, save, h("a", { class: "button secondary", href: "#/integrations" }, "Cancel")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    const wanted = {};
    for (const [key, [f, input]] of inputs) {
      const value = valueOf(f, input);
      if (value !== null && (creating || value !== (config[key] ?? null))) wanted[key] = value;
    }
    save.disabled = true;
    try {
      if (creating) {
        const body = { source_id: source.value, vendor, name: name.value.trim(), enabled: enabled.checked, config: wanted };
        const created = await api.post("/v1/admin/integrations", body);
        notify(`Integration “${created.name}” saved.`, "ok", { carry: true });
      } else {
        const patch = {};
        if (name.value.trim() !== current.name) patch.name = name.value.trim();
        if (enabled.checked !== current.enabled) patch.enabled = enabled.checked;
        if (Object.keys(wanted).length) patch.config = wanted;
        if (!Object.keys(patch).length) {
          notify("Nothing changed.");
          return;
        }
        await api.patch(`/v1/admin/integrations/${current.id}`, patch);
        notify(`Integration “${name.value.trim()}” saved.`, "ok", { carry: true });
      }
      location.hash = "#/integrations";
    } catch (error) {
      showError(form, error);
    } finally {
      save.disabled = false;
    }
  });
  const parts = [h("h1", {}, creating ? `Add Integration: ${destination.label}` : `Edit ${current.name}`)];
  if (!creating) parts.push(integrationSummary(current), activityPanel(current));
  parts.push(form);
  clear(main, parts);
  (creating ? source : name).focus();
}

function numberOrNull(input) {
  return input.value.trim() === "" ? null : Number(input.value);
}

export async function showIntegrationForm(main, id, focusField = null) {
  const { sources, integrations } = await sourcesAndIntegrations();
  const current = id ? await api.get(`/v1/admin/integrations/${id}`) : null;
  if (current && current.vendor !== "tiktok") return showDestinationForm(main, current.vendor, current);
  const creating = current === null;
  if (creating && !sources.length) {
    clear(
      main,
      h("h1", {}, "TikTok Events API"),
      h("p", { class: "card" }, "An integration belongs to a source, and there is none yet. ", h("a", { href: "#/sources/new" }, "Add a source"), " first."),
    );
    return;
  }
  const config = current ? current.config : {};

  const source = h("select", { required: true, disabled: !creating });
  for (const s of sources) source.append(h("option", { value: s.id }, `${s.name} (${s.id})`));
  source.value = current ? current.source_id : sources[0].id;
  const name = h("input", { type: "text", value: current ? current.name : "TikTok Events API", required: true });
  const pixel = h("input", {
    type: "text",
    value: config.pixel_code || "",
    required: true,
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "CXXXXXXXXXXXXXXXXX",
  });
  // Write-only: never filled in, never shown; the API's mask says one is saved.
  const accessToken = h("input", {
    type: "password",
    autocomplete: "new-password",
    spellcheck: "false",
    required: creating,
    placeholder: creating ? "" : `${config.access_token} (saved; type a new one to replace it)`,
  });
  const testCode = h("input", { type: "text", value: config.test_event_code || "", autocomplete: "off", placeholder: "TEST12345" });
  const enabled = h("input", { type: "checkbox", checked: current ? current.enabled : true });
  const rps = h("input", { type: "number", min: "0.1", step: "any", value: String(config.rate_limit_rps ?? 100) });
  const burst = h("input", { type: "number", min: "1", step: "1", value: String(config.rate_limit_burst ?? 200) });
  const currentNames = h("input", { type: "checkbox", checked: !!config.use_current_event_names });
  const limitedUse = h("input", { type: "checkbox", checked: !!config.limited_data_use });

  const chosen = new Set(current ? current.consent_categories : ["advertising"]);
  const categories = h("div", { class: "checks" });
  const addCategory = (category, checked) => {
    const box = h("input", { type: "checkbox", value: category, checked, id: `category-${category}` });
    categories.append(h("label", { class: "check", for: box.id }, box, category));
  };
  for (const category of knownCategories(integrations)) addCategory(category, chosen.has(category));
  for (const category of chosen) if (!categories.querySelector(`[value="${CSS.escape(category)}"]`)) addCategory(category, true);
  const newCategory = h("input", { type: "text", placeholder: "another category", "aria-label": "New consent category" });
  const addButton = h("button", { type: "button", class: "secondary" }, "Add category");
  addButton.addEventListener("click", () => {
    const value = newCategory.value.trim();
    if (!value) return;
    if (!categories.querySelector(`[value="${CSS.escape(value)}"]`)) addCategory(value, true);
    newCategory.value = "";
    notify(`Category “${value}” added; Save to keep it.`);
  });
  const consentFieldset = h(
    "fieldset",
    { "data-field": "consent_categories", tabindex: "-1", id: "consent-categories" },
    h("legend", {}, "Consent categories"),
    h(
      "p",
      { class: "hint" },
      "A hit reaches this integration only when every ticked category is granted in its consent; tick none to send every hit.",
    ),
    categories,
    h("div", { class: "inline" }, newCategory, addButton),
    h("p", { class: "field-error", id: "consent-categories-error", hidden: true }),
  );

  const save = h("button", { type: "submit" }, "Save");
  const testButton = h("button", { type: "button", class: "secondary" }, "Send a test event…");
  const form = h(
    "form",
    { class: "card form", novalidate: true },
    h("p", { class: "form-error", role: "alert", tabindex: "-1", hidden: true }),
    field("Source", source, { name: "source_id", hint: creating ? "The site whose hits this integration receives." : "An integration stays with its source." }),
    field("Name", name, { name: "name" }),
    field("Pixel code", pixel, { name: "config.pixel_code", hint: "TikTok Events Manager › your pixel › Settings." }),
    field("Access token", accessToken, {
      name: "config.access_token",
      hint: creating
        ? "Generated in Events Manager. Stored encrypted; never shown again."
        : "Stored encrypted and never shown. Leave empty to keep it.",
    }),
    field("Test event code", testCode, {
      name: "config.test_event_code",
      hint: "Optional: events then show in Events Manager › Test events (and are not used for ads). Clear it for production.",
    }),
    consentFieldset,
    h("div", { class: "field check-field" }, h("label", { class: "check" }, enabled, "Enabled"), h("p", { class: "hint" }, "A disabled integration receives nothing.")),
    h(
      "details",
      {},
      h("summary", {}, "Advanced"),
      field("Rate limit (requests per second)", rps, { name: "config.rate_limit_rps" }),
      field("Burst (requests)", burst, { name: "config.rate_limit_burst" }),
      h("div", { class: "field check-field" }, h("label", { class: "check" }, currentNames, "Use TikTok's current event names (Purchase, Lead)")),
      h("div", { class: "field check-field" }, h("label", { class: "check" }, limitedUse, "Limited data use")),
    ),
    h("div", { class: "actions" }, save, testButton, h("a", { class: "button secondary", href: "#/integrations" }, "Cancel")),
  );

  // The test send works on what the form holds now, saved or not.
  testButton.addEventListener("click", () => {
    const wanted = {
      pixel_code: pixel.value.trim(),
      test_event_code: testCode.value.trim() || null,
      use_current_event_names: currentNames.checked,
      limited_data_use: limitedUse.checked,
    };
    if (accessToken.value.trim()) wanted.access_token = accessToken.value.trim();
    const unsaved = creating
      ? { vendor: "tiktok", source_id: source.value, config: wanted }
      : { integration_id: current.id, config: wanted };
    openTestDialog(form, unsaved, testCode.value.trim() || config.test_event_code || "");
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    const ticked = [...categories.querySelectorAll("input:checked")].map((box) => box.value);
    const wanted = {
      pixel_code: pixel.value.trim(),
      test_event_code: testCode.value.trim() || null,
      rate_limit_rps: numberOrNull(rps),
      rate_limit_burst: numberOrNull(burst),
      use_current_event_names: currentNames.checked,
      limited_data_use: limitedUse.checked,
    };
    save.disabled = true;
    try {
      if (creating) {
        const body = {
          source_id: source.value,
          vendor: "tiktok",
          name: name.value.trim(),
          enabled: enabled.checked,
          config: { ...wanted, access_token: accessToken.value.trim() },
          consent_categories: ticked,
        };
        if (wanted.rate_limit_rps === null) delete body.config.rate_limit_rps;
        if (wanted.rate_limit_burst === null) delete body.config.rate_limit_burst;
        const created = await api.post("/v1/admin/integrations", body);
        notify(`Integration “${created.name}” saved.`, "ok", { carry: true });
      } else {
        // Only what changed: a PATCH with config also resumes a paused integration.
        const patch = {};
        if (name.value.trim() !== current.name) patch.name = name.value.trim();
        if (enabled.checked !== current.enabled) patch.enabled = enabled.checked;
        if (ticked.join("\u0000") !== current.consent_categories.join("\u0000")) patch.consent_categories = ticked;
        const changed = {};
        for (const [key, value] of Object.entries(wanted)) {
          if (value !== null && value !== (config[key] ?? null)) changed[key] = value;
        }
        if (wanted.test_event_code === null && config.test_event_code) changed.test_event_code = null;
        if (accessToken.value.trim()) changed.access_token = accessToken.value.trim();
        if (Object.keys(changed).length) patch.config = changed;
        if (!Object.keys(patch).length) {
          notify("Nothing changed.");
          return;
        }
        await api.patch(`/v1/admin/integrations/${current.id}`, patch);
        notify(`Integration “${name.value.trim()}” saved.`, "ok", { carry: true });
      }
      location.hash = "#/integrations";
    } catch (error) {
      showError(form, error);
    } finally {
      save.disabled = false;
    }
  });

  const parts = [h("h1", {}, creating ? "Add Integration: TikTok Events API" : `Edit ${current.name}`)];
  if (!creating) parts.push(integrationSummary(current, form), activityPanel(current));
  parts.push(form);
  clear(main, parts);
  const wantedField = focusField && form.querySelector(`[data-field="${CSS.escape(focusField)}"]`);
  if (wantedField) {
    wantedField.setAttribute("data-focus-asked", "");
    wantedField.addEventListener("blur", () => wantedField.removeAttribute("data-focus-asked"), { once: true });
    wantedField.scrollIntoView({ block: "center" });
    wantedField.focus();
  } else {
    (creating ? pixel : name).focus();
  }
}

// The test send's dialog: the test event code (required: without one the sample would land in
// the pixel's production data), then the exact request body and TikTok's answer. Green only
// when TikTok accepted the event.
function openTestDialog(form, unsaved, prefill) {
  const code = h("input", { type: "text", id: "test-send-code", value: prefill, autocomplete: "off", spellcheck: "false", required: true, placeholder: "TEST12345" });
  const result = h("div", { class: "test-result", "aria-live": "polite" });
  const send = h("button", { type: "submit" }, "Send test event");
  const close = h("button", { type: "button", class: "secondary", value: "close" }, "Close");
  const dialog = h(
    "dialog",
    { class: "test-send", "aria-labelledby": "test-send-title" },
    h("h2", { id: "test-send-title" }, "Send a test event"),
    h(
      "p",
      { class: "hint" },
      "One PageView from a made-up visitor (IP 203.0.113.10), sent with the form as it is now, saved or not. It shows in Events Manager › Test events and in the event debugger, marked as a test; it never counts as delivered.",
    ),
  );
  const testForm = h(
    "form",
    { novalidate: true },
    field("Test event code", code, { name: "test_event_code", hint: "From TikTok Events Manager › your pixel › Test events. Required: a test never goes to production data." }),
    h("div", { class: "actions" }, send, close),
  );
  dialog.append(testForm, result);
  close.addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => dialog.remove());
  testForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFieldErrors(testForm);
    if (!code.value.trim()) {
      showError(testForm, { field: "test_event_code", message: "Enter the test event code from Events Manager." });
      return;
    }
    send.disabled = true;
    try {
      const answer = await api.post("/v1/admin/integrations/test", { ...unsaved, test_event_code: code.value.trim() });
      const a = answer.answer;
      const said = answer.error
        ? `Not sent: ${answer.error}`
        : `TikTok answered HTTP ${a.http_status}, code ${a.code}: ${a.message || "(no message)"}`;
      clear(
        result,
        h(
          "p",
          { class: `test-outcome ${answer.accepted ? "ok" : "failed"}`, "data-accepted": String(answer.accepted) },
          answer.accepted ? "Accepted. " : "Refused. ",
          said,
        ),
        h("h3", {}, "The request body (the access token travels in a header and is never shown)"),
        pretty(answer.request.body),
        h("h3", {}, "TikTok's answer"),
        pretty(a),
        h("p", {}, h("a", { href: "#/debugger" }, `See ${answer.event_id} in the event debugger`)),
      );
      notify(answer.accepted ? "Test event accepted by TikTok." : `Test event refused: ${said}`, answer.accepted ? "ok" : "error");
    } catch (error) {
      if (error.field && error.field.startsWith("config")) {
        dialog.close();
        showError(form, error);
      } else {
        showError(testForm, error);
      }
    } finally {
      send.disabled = false;
    }
  });
  document.body.append(dialog);
  dialog.showModal();
  code.focus();
}

function integrationSummary(integration, form = null) {
  const s = integration.status;
  const result = h("div", { class: "test-result", "aria-live": "polite" });
  // TikTok's form has its own test (with a test event code); other destinations test here.
  const test = form ? null : h("button", { type: "button", class: "secondary" }, "Send a test event");
  test?.addEventListener("click", async () => {
    const answer = await act(test, () => api.post(`/v1/admin/integrations/${integration.id}/test`, {}));
    if (!answer) return;
    const a = answer.answer;
    const text = answer.error ? `Not sent: ${answer.error}` : `Answered HTTP ${a.http_status}: ${a.message || "(no message)"}`;
    clear(result, h("p", { class: `test-outcome ${answer.accepted ? "ok" : "failed"}` }, text), pretty(answer.request.body));
    notify(answer.accepted ? "Test event accepted." : `Test event refused: ${text}`, answer.accepted ? "ok" : "error");
  });
  // After a mapping change: plan a time range of raw hits again (a dry-run count first).
  const reprocess = h("button", { type: "button", class: "secondary" }, "Re-process…");
  reprocess.addEventListener("click", () => openReprocessDialog(integration));
  const hint = s.pause_hint;
  const fix = hint && hint.field && form ? form.querySelector(`[data-field="${CSS.escape(hint.field)}"]`) : null;
  const fixLink = fix ? h("a", { href: `#/integrations/${integration.id}?field=${hint.field}` }, fieldLabel(hint.field)) : null;
  fixLink?.addEventListener("click", (event) => {
    event.preventDefault();
    fix.scrollIntoView({ block: "center" });
    fix.focus();
  });
  return h(
    "section",
    { class: "card summary", "aria-label": "Status" },
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Status"),
      h("dd", {}, stateBadge(integration), hint ? [pauseHint(integration, { link: false }), fixLink ? h("p", { class: "pause-hint" }, fixLink) : null] : null),
      h("dt", {}, "Queued / delivered / failed / dead-lettered"),
      h(
        "dd",
        {},
        `${s.queued} / ${s.delivered} / ${s.failed} / ${s.dead_lettered}`,
        hint && hint.failed_requests ? ` (${hint.failed_requests} request${hint.failed_requests === 1 ? "" : "s"} refused)` : "",
      ),
      h("dt", {}, "Last error"),
      h("dd", {}, lastError(s)),
      h("dt", {}, "Last success"),
      h("dd", {}, formatTime(s.last_success_at)),
    ),
    h(
      "div",
      { class: "actions" },
      test,
      h("a", { class: "button secondary", href: `#/dead-letters/${integration.id}` }, "Dead letters"),
      h("a", { class: "button secondary", href: "#/debugger" }, "Event debugger"),
      reprocess,
    ),
    result,
  );
}
