// Dead letters: per integration, with the reason and TikTok's answer; replay one or all.

import { api, query } from "./api.js";
import { act, clear, confirmAction, field, formatTime, h, notify } from "./dom.js";
import { sourcesAndIntegrations } from "./shared.js";

function replayMessage(result) {
  const skipped = result.skipped || [];
  let text = `${result.replayed} dead letter${result.replayed === 1 ? "" : "s"} replayed (sent again with the same event_id).`;
  if (skipped.length) {
    const consent = skipped.filter((s) => s.reason === "consent").length;
    text += ` ${skipped.length} skipped` + (consent ? ` (${consent} no longer allowed by consent)` : "") + ".";
  }
  return text;
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
    return h(
      "tr",
      { "data-dead-letter": String(item.id) },
      h("th", { scope: "row" }, h("a", { href: "#/debugger", onclick: () => sessionStorage.setItem("gateway.debugEventId", item.event_id) }, item.event_id)),
      h("td", {}, item.event_name),
      h("td", {}, h("span", { class: "badge badge-paused" }, item.reason)),
      h("td", { class: "error-text" }, item.answer || "—"),
      h("td", { class: "num" }, item.attempts),
      h("td", {}, formatTime(item.dead_lettered_at)),
      h("td", { class: "row-actions" }, replay),
    );
  });

  clear(
    main,
    h("div", { class: "title-row" }, h("h1", {}, "Dead letters"), h("div", { class: "actions" }, replayAll, purgeAll)),
    h("div", { class: "card toolbar" }, field("Integration", picker)),
    h(
      "p",
      { class: "hint" },
      "Events TikTok refused for their content, events too old to send, and purchases without value or currency. Fix the cause, then replay.",
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
