// An integration's activity over the last hour or day (GET …/timeline): events by outcome,
// the batches sent and TikTok's latency, and match quality over time. Drawn as SVG by charts.js.

import { api, query } from "./api.js";
import { lines, stackedBars } from "./charts.js";
import { clear, h, notify } from "./dom.js";

export const OUTCOME_SERIES = [
  { key: "delivered", label: "Delivered", cls: "s-delivered" },
  { key: "failed", label: "Failed", cls: "s-failed" },
  { key: "dead_lettered", label: "Dead-lettered", cls: "s-dead" },
  { key: "denied", label: "Denied by consent", cls: "s-denied" },
];
const SIGNAL_SERIES = [
  { key: "ttclid", label: "ttclid", cls: "s-1" },
  { key: "ttp", label: "ttp", cls: "s-2" },
  { key: "email", label: "email", cls: "s-3" },
  { key: "phone", label: "phone", cls: "s-4" },
  { key: "external_id_user", label: "user id", cls: "s-5" },
];

function per(timeline) {
  return timeline.bucket_seconds === 60 ? "per minute" : "per 10 minutes";
}

function outcomeSummary(timeline) {
  const t = timeline.totals;
  return `Last ${timeline.hours === 1 ? "hour" : "24 hours"}: ${t.delivered} delivered, ${t.failed} failed, ${t.dead_lettered} dead-lettered, ${t.denied} denied by consent.`;
}

function outcomes(timeline, compact) {
  return stackedBars({
    title: `Events ${per(timeline)} by outcome`,
    points: timeline.points,
    series: OUTCOME_SERIES,
    height: compact ? 120 : 170,
    summary: outcomeSummary(timeline),
  });
}

function average(values) {
  const known = values.filter((v) => v !== null && v !== undefined);
  return known.length ? known.reduce((a, b) => a + b, 0) / known.length : null;
}

function deliveryFigures(timeline) {
  const batch = average(timeline.points.map((p) => p.batch_size_avg));
  const latency = average(timeline.points.map((p) => p.latency_ms_avg));
  const requests = timeline.points.reduce((sum, p) => sum + p.requests, 0);
  return { batch, latency, requests };
}

function batches(timeline) {
  const { batch, requests } = deliveryFigures(timeline);
  return lines({
    title: `Batch size (events per request, ${per(timeline)})`,
    points: timeline.points,
    series: [
      { key: "batch_avg", label: "average", cls: "s-1", value: (p) => p.batch_size_avg },
      { key: "batch_max", label: "largest", cls: "s-2", value: (p) => p.batch_size_max },
    ],
    format: (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1)),
    summary: requests ? `${requests} requests, ${batch.toFixed(1)} events each on average.` : "No request sent.",
  });
}

function latency(timeline) {
  const { latency: ms } = deliveryFigures(timeline);
  return lines({
    title: `TikTok latency (ms, ${per(timeline)})`,
    points: timeline.points,
    series: [
      { key: "latency_avg", label: "average", cls: "s-1", value: (p) => p.latency_ms_avg },
      { key: "latency_max", label: "slowest", cls: "s-4", value: (p) => p.latency_ms_max },
    ],
    format: (v) => String(Math.round(v)),
    summary: ms === null ? "No request sent." : `TikTok answered in ${Math.round(ms)} ms on average.`,
  });
}

function matchQuality(timeline) {
  return lines({
    title: `Match quality (share of events with each key, ${per(timeline)})`,
    points: timeline.points,
    series: SIGNAL_SERIES.map((s) => ({ ...s, value: (p) => p.match.shares[s.key] })),
    yMax: 1,
    format: (v) => `${Math.round(v * 100)}%`,
    summary: "Share of the events received in each bucket that carried each match key.",
  });
}

// The window switch shared by a screen's charts: "Last hour" / "Last day".
export function windowSwitch(hours, onChange) {
  const make = (value, label) => {
    const button = h("button", { type: "button", class: "secondary small", "aria-pressed": String(hours === value) }, label);
    button.addEventListener("click", () => onChange(value));
    return button;
  };
  return h("div", { class: "window-switch", role: "group", "aria-label": "Time window" }, make(1, "Last hour"), make(24, "Last day"));
}

async function timelineOf(integrationId, hours) {
  return api.get(`/v1/admin/integrations/${integrationId}/timeline${query({ hours })}`);
}

// The integrations list: per integration, its outcomes and two figures under them.
export async function drawCompact(container, integration, hours) {
  const timeline = await timelineOf(integration.id, hours);
  const { batch, latency: ms, requests } = deliveryFigures(timeline);
  clear(
    container,
    h("h3", {}, h("a", { href: `#/integrations/${integration.id}` }, integration.name)),
    outcomes(timeline, true),
    h(
      "p",
      { class: "sub chart-figures" },
      requests
        ? `${requests} request${requests === 1 ? "" : "s"} · ${batch.toFixed(1)} events per request · TikTok answered in ${Math.round(ms)} ms on average`
        : "No request sent in this window.",
    ),
  );
}

// One integration's screen: every chart, with its own window switch.
export function activityPanel(integration) {
  const section = h("section", { class: "card activity", id: "activity", "aria-labelledby": "activity-title" });
  let hours = 1;
  async function draw() {
    const timeline = await timelineOf(integration.id, hours);
    clear(
      section,
      h("div", { class: "title-row" }, h("h2", { id: "activity-title" }, "Activity"), windowSwitch(hours, (value) => {
        hours = value;
        redraw();
      })),
      h("p", { class: "hint" }, `${outcomeSummary(timeline)} Batch size and latency are this gateway process's requests to TikTok.`),
      h("div", { class: "charts" }, outcomes(timeline, false), matchQuality(timeline), batches(timeline), latency(timeline)),
    );
  }
  const redraw = () => draw().catch((error) => notify(error.message, "error"));
  redraw();
  return section;
}
