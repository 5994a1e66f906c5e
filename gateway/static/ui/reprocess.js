// Re-process a time range of an integration's raw hits after a mapping change
// (POST /v1/admin/integrations/{id}/reprocess): a dry-run count first, then the real run, which
// the operator confirms with the count in front of them.

import { api } from "./api.js";
import { clear, clearFieldErrors, field, h, notify, showError } from "./dom.js";

const COUNT_LABELS = [
  ["hits", "Raw hits in the range"],
  ["queue", "Events to queue with the current mapping"],
  ["skipped_consent", "Skipped: consent does not allow this integration"],
  ["rejected", "Rejected by the destination's checks (e.g. a purchase without value)"],
  ["skipped_delivered", "Skipped: already delivered under the same event name"],
  ["skipped_pending", "Skipped: still in the queue"],
  ["not_sendable", "Not sendable (identify hits and the like)"],
];

// "2026-01-29T14:30" in the browser's time zone, as a datetime-local input holds it.
function localInput(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

function isoOf(input) {
  const date = new Date(input.value);
  return Number.isNaN(date.getTime()) ? input.value : date.toISOString();
}

export function openReprocessDialog(integration) {
  const now = new Date();
  const since = h("input", { type: "datetime-local", id: "reprocess-since", value: localInput(new Date(now.getTime() - 3600_000)), required: true });
  // The end is the next minute, so the hits of the current minute are in the range.
  const until = h("input", { type: "datetime-local", id: "reprocess-until", value: localInput(new Date(now.getTime() + 60_000)), required: true });
  const count = h("button", { type: "submit", class: "secondary" }, "Count (dry run)");
  const confirm = h("button", { type: "button", disabled: true }, "Re-process");
  const close = h("button", { type: "button", class: "secondary" }, "Close");
  const retention = h("p", { class: "hint", id: "reprocess-retention" }, "Counting the last hour…");
  const result = h("div", { class: "reprocess-result", "aria-live": "polite" });
  const form = h(
    "form",
    { novalidate: true },
    h("div", { class: "inline" }, field("From", since, { name: "since" }), field("To", until, { name: "until" })),
    h("div", { class: "actions" }, count, confirm, close),
  );
  const dialog = h(
    "dialog",
    { class: "test-send reprocess", "aria-labelledby": "reprocess-title" },
    h("h2", { id: "reprocess-title" }, `Re-process hits for ${integration.name}`),
    h(
      "p",
      { class: "hint" },
      "After a mapping change: the raw hits received in the range are planned again with this integration's current settings and queued with their original event ids. Events already delivered under the same TikTok event name are skipped (TikTok would drop them as duplicates), and so are events still in the queue.",
    ),
    retention,
    form,
    result,
  );
  let counted = null; // the dry run the confirm button stands for

  function range() {
    return { since: isoOf(since), until: isoOf(until) };
  }

  async function dryRun() {
    clearFieldErrors(form);
    confirm.disabled = true;
    counted = null;
    count.disabled = true;
    try {
      const answer = await api.post(`/v1/admin/integrations/${integration.id}/reprocess`, { ...range(), dry_run: true });
      retention.textContent = `Raw hits are kept ${answer.retention_hours} hours: older ones can no longer be re-processed.`;
      clear(
        result,
        h(
          "dl",
          { class: "facts", id: "reprocess-counts" },
          COUNT_LABELS.map(([key, label]) => [h("dt", {}, label), h("dd", { "data-count": key }, String(answer.counts[key]))]),
        ),
        answer.complete ? null : h("p", { class: "pause-hint" }, "More than 10,000 hits in this range: re-process a shorter one."),
      );
      counted = answer;
      confirm.textContent = `Re-process ${answer.counts.queue} event${answer.counts.queue === 1 ? "" : "s"}`;
      confirm.disabled = !answer.complete || answer.counts.queue === 0;
    } catch (error) {
      showError(form, error);
    } finally {
      count.disabled = false;
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    dryRun();
  });
  for (const input of [since, until]) {
    input.addEventListener("change", () => {
      // A new range needs a new count before anything is queued.
      counted = null;
      confirm.disabled = true;
      confirm.textContent = "Re-process";
    });
  }
  confirm.addEventListener("click", async () => {
    if (!counted) return;
    confirm.disabled = true;
    try {
      const answer = await api.post(`/v1/admin/integrations/${integration.id}/reprocess`, { ...range(), dry_run: false });
      const queued = answer.counts.queue;
      clear(result, h("p", { class: "test-outcome ok", id: "reprocess-done" }, `${queued} event${queued === 1 ? "" : "s"} queued with the current mapping.`), h("p", {}, h("a", { href: "#/debugger" }, "Follow them in the event debugger")));
      notify(`${queued} event${queued === 1 ? "" : "s"} re-processed.`);
      counted = null;
    } catch (error) {
      showError(form, error);
    }
  });
  close.addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  count.focus();
  dryRun();
}
