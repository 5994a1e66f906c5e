// Dead letters: per integration, with the reason and TikTok's answer; replay one or all.

import { api, query } from "./api.js";
import { act, clear, clearFieldErrors, clearNotices, confirmAction, field, formatTime, h, notify, pretty, showError } from "./dom.js";
import { sourcesAndIntegrations } from "./shared.js";

function replayMessage(result) {
  const skipped = result.skipped || [];
  let text = `${result.replayed} dead letter${result.replayed === 1 ? "" : "s"} replayed (sent again with the same event_id).`;
  if (skipped.length) {
    const consent = skipped.filter((s) => s.reason === "consent").length;
    text += ` ${skipped.length} skipped` + (consent ? ` (${consent} no longer allowed by consent)` : "") + ".";
  }
  const failing = result.still_failing || [];
  if (failing.length) {
    const reasons = [...new Set(failing.map((f) => f.reason))].join(", ");
    text += ` ${failing.length} still failing (${reasons}): they stay dead letters; use Fix to correct them.`;
  }
  return text;
}

// The fields an operator may correct, as the API names them, read from the stored event.
const FIX_FIELDS = [
  { name: "event", label: "Event name", read: (p) => p.event },
  { name: "value", label: "Value", read: (p) => p.properties?.value, number: true, hint: "A number, e.g. 49.90" },
  { name: "currency", label: "Currency", read: (p) => p.properties?.currency, hint: "Three letters (ISO 4217), e.g. EUR" },
  { name: "order_id", label: "Order ID", read: (p) => p.properties?.order_id },
  { name: "content_type", label: "Content type", read: (p) => p.properties?.content_type, hint: "product or product_group" },
  { name: "lead_id", label: "Lead ID", read: (p) => p.lead?.lead_id, hint: "CRM sources only" },
];

function asText(value) {
  return value === undefined || value === null ? "" : String(value);
}

// Fix, then replay: the stored event is shown as it would be sent; the operator corrects
// fields, previews the result (the gateway re-runs its checks), then replays it.
async function openFixDialog(base, item, done) {
  const url = `${base}/${encodeURIComponent(item.id)}/fix`;
  let shown;
  try {
    shown = await api.post(url, { preview: true, changes: {} });
  } catch (error) {
    notify(error.message, "error");
    return;
  }
  const original = shown.payload;
  const inputs = FIX_FIELDS.map((f) => ({
    ...f,
    input: h("input", { type: "text", value: asText(f.read(original)), autocomplete: "off", inputmode: f.number ? "decimal" : undefined }),
  }));
  const changes = () => {
    const out = {};
    for (const f of inputs) {
      const now = f.input.value.trim();
      if (now === asText(f.read(original))) continue;
      if (now === "") out[f.name] = null;
      else if (f.number && now !== "" && !Number.isNaN(Number(now))) out[f.name] = Number(now);
      else out[f.name] = now;
    }
    return out;
  };
  const outcome = h("div", { class: "fix-outcome", "aria-live": "polite" });
  const showPreview = (answer) => {
    clear(
      outcome,
      h(
        "p",
        { class: `test-outcome ${answer.still_failing || !answer.consent ? "failed" : "ok"}`, "data-still-failing": answer.still_failing || "" },
        answer.still_failing
          ? `${answer.still_failing}: replaying now would leave it a dead letter.`
          : answer.consent
            ? "Passes the checks: this is the event that will be sent."
            : "The hit's consent does not allow this integration: it cannot be replayed.",
      ),
      h("h3", {}, `The event that will be sent (event_id ${answer.payload.event_id} is kept)`),
      pretty(answer.payload),
    );
  };
  showPreview(shown);
  const previewButton = h("button", { type: "button", class: "secondary" }, "Preview");
  const replay = h("button", { type: "submit" }, "Fix and replay");
  const cancel = h("button", { type: "button", class: "secondary" }, "Cancel");
  const form = h(
    "form",
    { novalidate: true, class: "fix-form" },
    h("p", { class: "form-error", tabindex: "-1", hidden: true }),
    inputs.map((f) => field(f.label, f.input, { name: `changes.${f.name}`, hint: f.hint })),
    h("div", { class: "actions" }, previewButton, replay, cancel),
  );
  const dialog = h(
    "dialog",
    { class: "test-send fix-dead-letter", "aria-labelledby": "fix-title" },
    h("h2", { id: "fix-title" }, `Fix ${item.event_id}, then replay`),
    h("p", { class: "hint" }, `Dead-lettered as ${item.reason}. Correct the fields, preview the event, then replay it.`),
    form,
    outcome,
  );
  cancel.addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => dialog.remove());
  const send = async (preview) => {
    clearFieldErrors(form);
    const button = preview ? previewButton : replay;
    button.disabled = true;
    try {
      const answer = await api.post(url, { preview, changes: changes() });
      if (preview) {
        clearNotices(); // an earlier refusal's notice no longer applies
        showPreview(answer);
        return;
      }
      dialog.close();
      notify(`${item.event_id} fixed and queued again with the same event_id.`);
      await done();
    } catch (error) {
      if (error.field) showError(form, error);
      else {
        clear(outcome, h("p", { class: "test-outcome failed", role: "alert" }, error.message));
        notify(error.message, "error");
      }
    } finally {
      button.disabled = false;
    }
  };
  previewButton.addEventListener("click", () => send(true));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    send(false);
  });
  document.body.append(dialog);
  dialog.showModal();
}

export async function showDeadLetters(main, integrationId) {
  const { integrations } = await sourcesAndIntegrations();
  if (!integrations.length) {
    clear(main, h("h1", {}, "Dead letters"), h("p", { class: "card" }, "No integration yet."));
    return;
  }
  const chosen = integrations.find((i) => i.id === integrationId) || integrations[0];
  const picker = h("select", {});
  for (const integration of integrations) {
    picker.append(h("option", { value: integration.id }, `${integration.name} (${integration.status.dead_lettered} dead letter${integration.status.dead_lettered === 1 ? "" : "s"})`));
  }
  picker.value = chosen.id;
  picker.addEventListener("change", () => {
    location.hash = `#/dead-letters/${picker.value}`;
  });

  const { dead_letters: items } = await api.get(
    `/v1/admin/integrations/${chosen.id}/dead-letters${query({ limit: 1000 })}`,
  );
  const base = `/v1/admin/integrations/${chosen.id}/dead-letters`;
  const redraw = () => showDeadLetters(main, chosen.id);

  const replayAll = h("button", { type: "button", disabled: !items.length }, "Replay all");
  replayAll.addEventListener("click", async () => {
    const sure = await confirmAction(
      `Send all ${items.length} dead letters of “${chosen.name}” to TikTok again? Consent is checked again; event_ids stay the same, so TikTok de-duplicates.`,
      "Replay all",
    );
    if (!sure) {
      notify("Nothing was replayed.");
      return;
    }
    const result = await act(replayAll, () => api.post(`${base}/replay`, { all: true }), replayMessage);
    if (result) await redraw();
  });
  const purgeAll = h("button", { type: "button", class: "danger", disabled: !items.length }, "Delete all");
  purgeAll.addEventListener("click", async () => {
    const sure = await confirmAction(`Delete all ${items.length} dead letters of “${chosen.name}”? They will never be sent.`);
    if (!sure) {
      notify("Nothing was deleted.");
      return;
    }
    const result = await act(purgeAll, () => api.del(base, { all: true }), (r) => `${r.purged} dead letters deleted.`);
    if (result) await redraw();
  });

  const rows = items.map((item) => {
    const replay = h("button", { type: "button", "aria-label": `Replay ${item.event_id}` }, "Replay");
    replay.addEventListener("click", async () => {
      const result = await act(replay, () => api.post(`${base}/replay`, { ids: [item.id] }), replayMessage);
      if (result) await redraw();
    });
    const fix = h("button", { type: "button", class: "secondary", "aria-label": `Fix ${item.event_id}` }, "Fix");
    fix.addEventListener("click", () => openFixDialog(base, item, redraw));
    return h(
      "tr",
      { "data-dead-letter": String(item.id) },
      h("th", { scope: "row" }, h("a", { href: "#/debugger", onclick: () => sessionStorage.setItem("gateway.debugEventId", item.event_id) }, item.event_id)),
      h("td", {}, item.event_name),
      h("td", {}, h("span", { class: "badge badge-paused" }, item.reason)),
      h("td", { class: "error-text" }, item.answer || "—"),
      h("td", { class: "num" }, item.attempts),
      h("td", {}, formatTime(item.dead_lettered_at)),
      h("td", { class: "row-actions" }, fix, replay),
    );
  });

  clear(
    main,
    h("div", { class: "title-row" }, h("h1", {}, "Dead letters"), h("div", { class: "actions" }, replayAll, purgeAll)),
    h("div", { class: "card toolbar" }, field("Integration", picker)),
    h(
      "p",
      { class: "hint" },
      "Events TikTok refused for their content, events too old to send, and purchases without value or currency. Replay checks each event again: what still fails stays here with the reason. Fix corrects an event's fields and shows what will be sent before replaying it.",
    ),
    items.length
      ? h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            { class: "list", id: "dead-letters" },
            h("caption", { class: "visually-hidden" }, `Dead letters of ${chosen.name}`),
            h(
              "thead",
              {},
              h("tr", {}, ["Event ID", "Event", "Reason", "TikTok's answer", "Attempts", "Dead-lettered", "Actions"].map((l) => h("th", { scope: "col" }, l))),
            ),
            h("tbody", {}, rows),
          ),
        )
      : h("p", { class: "empty card" }, `No dead letters for “${chosen.name}”.`),
  );
}
