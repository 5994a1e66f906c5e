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
  showError,
} from "./dom.js";
import { knownCategories, onLeave, sourcesAndIntegrations } from "./shared.js";

const REFRESH_MS = 10000;

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

export async function showIntegrations(main) {
  const heading = h("h1", {}, "Integrations");
  const body = h("div", { class: "table-wrap" });
  const refresh = h("button", { type: "button", class: "secondary" }, "Refresh");
  clear(
    main,
    h(
      "div",
      { class: "title-row" },
      heading,
      h("div", { class: "actions" }, refresh, h("a", { class: "button", href: "#/integrations/new" }, "Add Integration")),
    ),
    body,
  );

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
      togglePause.addEventListener("click", () =>
        act(
          togglePause,
          () => api.post(`/v1/admin/integrations/${integration.id}/${paused ? "resume" : "pause"}`),
          `${name} ${paused ? "resumed" : "paused"}.`,
        ).then(draw),
      );
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
        h("td", {}, stateBadge(integration)),
        h("td", { class: "num" }, s.queued),
        h("td", { class: "num" }, s.delivered),
        h("td", { class: "num" }, s.failed),
        h(
          "td",
          { class: "num" },
          s.dead_lettered ? h("a", { href: `#/dead-letters/${integration.id}` }, s.dead_lettered) : "0",
        ),
        h("td", { class: "error-text" }, s.last_error || "—"),
        h("td", {}, formatTime(s.last_success_at)),
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
        { class: "list", id: "integrations" },
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

  refresh.addEventListener("click", () => act(refresh, draw, "Integrations refreshed."));
  await draw();
  const timer = setInterval(() => draw().catch(() => {}), REFRESH_MS);
  onLeave(() => clearInterval(timer));
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
        notify(`Integration “${created.name}” saved.`);
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
        notify(`Integration “${name.value.trim()}” saved.`);
      }
      location.hash = "#/integrations";
    } catch (error) {
      showError(form, error);
    } finally {
      save.disabled = false;
    }
  });
  const parts = [h("h1", {}, creating ? `Add Integration: ${destination.label}` : `Edit ${current.name}`)];
  if (!creating) parts.push(integrationSummary(current));
  parts.push(form);
  clear(main, parts);
  (creating ? source : name).focus();
}

function numberOrNull(input) {
  return input.value.trim() === "" ? null : Number(input.value);
}

export async function showIntegrationForm(main, id) {
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
    h("div", { class: "actions" }, save, h("a", { class: "button secondary", href: "#/integrations" }, "Cancel")),
  );

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
        notify(`Integration “${created.name}” saved.`);
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
        notify(`Integration “${name.value.trim()}” saved.`);
      }
      location.hash = "#/integrations";
    } catch (error) {
      showError(form, error);
    } finally {
      save.disabled = false;
    }
  });

  const parts = [h("h1", {}, creating ? "Add Integration: TikTok Events API" : `Edit ${current.name}`)];
  if (!creating) parts.push(integrationSummary(current));
  parts.push(form);
  clear(main, parts);
  (creating ? pixel : name).focus();
}

function integrationSummary(integration) {
  const s = integration.status;
  const result = h("div", { class: "test-result", "aria-live": "polite" });
  const test = h("button", { type: "button", class: "secondary" }, "Send a test event");
  test.addEventListener("click", async () => {
    const answer = await act(test, () => api.post(`/v1/admin/integrations/${integration.id}/test`));
    if (!answer) return;
    const t = answer.tiktok;
    const text = answer.error
      ? `Not sent: ${answer.error}`
      : `TikTok answered HTTP ${t.http_status}, code ${t.code}: ${t.message || "(no message)"}`;
    clear(result, h("p", {}, text));
    notify(answer.error ? "The test event could not be sent." : "Test event sent; TikTok's answer is shown.", answer.error ? "error" : "ok");
  });
  return h(
    "section",
    { class: "card summary", "aria-label": "Status" },
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Status"),
      h("dd", {}, stateBadge(integration)),
      h("dt", {}, "Queued / delivered / failed / dead-lettered"),
      h("dd", {}, `${s.queued} / ${s.delivered} / ${s.failed} / ${s.dead_lettered}`),
      h("dt", {}, "Last error"),
      h("dd", {}, s.last_error || "—"),
      h("dt", {}, "Last success"),
      h("dd", {}, formatTime(s.last_success_at)),
    ),
    h(
      "div",
      { class: "actions" },
      test,
      h("a", { class: "button secondary", href: `#/dead-letters/${integration.id}` }, "Dead letters"),
      h("a", { class: "button secondary", href: "#/debugger" }, "Event debugger"),
    ),
    result,
  );
}
