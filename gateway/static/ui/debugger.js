// The event debugger: recent hits and what became of them, live, with the match quality of
// each integration. Records come from the ledger (GET /v1/admin/events), then the stream
// (GET /v1/admin/events/stream, read with fetch so the token stays in a header). One search
// box finds an event by id, order id, event name, user (email or user id, hashed by the
// gateway) or ttclid, within a time range typed into the same box ("48h"); a search shows
// its results instead of the live view (POST /v1/admin/events/search).

import { api, query, readStream } from "./api.js";
import { act, clear, field, formatClock, formatTime, h, notify, pretty } from "./dom.js";
import { onLeave, sourcesAndIntegrations } from "./shared.js";

const SHOWN = 200;
// The match-quality columns, as the API names them. external_id_user / _anonymous split
// external_id: a user id (identify or the hit's user_id) was known, or only the anonymous id.
const SIGNALS = [
  "ttp",
  "ttclid",
  "email",
  "phone",
  "external_id",
  "external_id_user",
  "external_id_anonymous",
  "first_name",
  "last_name",
  "city",
  "state",
  "country",
  "zip_code",
  "ip",
  "user_agent",
];
const SIGNAL_LABELS = { external_id_user: "external_id: user id", external_id_anonymous: "external_id: anonymous only" };
const STATUS_LABELS = {
  queued: "Queued",
  delivered: "Delivered",
  retrying: "Retrying",
  paused: "Paused",
  rejected: "Rejected",
  dead_lettered: "Dead-lettered",
  not_sent: "Not sent",
  identified: "Identify (hashed traits kept)",
};

const DEFAULT_HOURS = 24;

// The box's text: "<term> [N h]". The time range may come first or last ("48h", "last 3 hours").
export function parseSearch(text) {
  let hours = DEFAULT_HOURS;
  const range = /(?:^|\s)(?:last\s+)?(\d{1,5})\s*(?:h|hr|hrs|hours?)\s*$|^\s*(?:last\s+)?(\d{1,5})\s*(?:h|hr|hrs|hours?)(?:\s|$)/i;
  const match = text.match(range);
  let term = text;
  if (match) {
    hours = Number(match[1] || match[2]);
    term = text.replace(match[0], " ");
  }
  return { q: term.trim(), hours };
}

// "14:03:07 (3 min ago)": the local time and how long ago, for times an operator compares.
export function readableTime(iso, now = Date.now()) {
  if (!iso) return "—";
  const seconds = Math.round((now - new Date(iso).getTime()) / 1000);
  const ago = Math.abs(seconds);
  let relative;
  if (ago < 5) relative = "just now";
  else if (ago < 90) relative = `${ago} s`;
  else if (ago < 90 * 60) relative = `${Math.round(ago / 60)} min`;
  else if (ago < 36 * 3600) relative = `${Math.round(ago / 3600)} h`;
  else relative = `${Math.round(ago / 86400)} days`;
  if (ago >= 5) relative = seconds >= 0 ? `${relative} ago` : `in ${relative}`;
  return `${formatTime(iso)} (${relative})`;
}

// Copy text; the Clipboard API needs a secure context (and may be refused), so fall back to a
// selected text area and the older copy command.
export async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // refused (no permission, no focus): try the fallback below
  }
  const area = h("textarea", { readonly: "", class: "visually-hidden", "aria-hidden": "true" });
  area.value = text;
  document.body.append(area);
  area.select();
  let copied = false;
  try {
    copied = document.execCommand("copy");
  } catch {
    copied = false;
  }
  area.remove();
  return copied;
}

function copyButton(label, text) {
  const button = h("button", { type: "button", class: "secondary small copy", "aria-label": `Copy ${label}` }, "Copy");
  button.addEventListener("click", async () => {
    const copied = await copyText(text());
    button.textContent = copied ? "Copied" : "Copy failed";
    setTimeout(() => {
      button.textContent = "Copy";
    }, 2000);
  });
  return button;
}

// One of the side-by-side panes of an event: a heading, its copy button, its content.
function pane(id, title, value, content) {
  return h(
    "section",
    { class: "pane", id, "aria-labelledby": `${id}-title` },
    h("div", { class: "pane-head" }, h("h3", { id: `${id}-title` }, title), value === undefined ? null : copyButton(title, () => JSON.stringify(value, null, 2))),
    content,
  );
}

function factList(pairs) {
  return h(
    "dl",
    { class: "facts" },
    pairs.filter(([, value]) => value !== undefined).map(([label, value]) => [h("dt", {}, label), h("dd", {}, value === null || value === "" ? "—" : value)]),
  );
}

function cookieText(jar) {
  const entries = Object.entries(jar || {}).filter(([, value]) => value);
  if (!entries.length) return "none";
  return entries.map(([name, value]) => h("div", {}, h("code", {}, name), " = ", h("code", {}, String(value))));
}

function keyOf(record) {
  return `${record.event_id}\u0000${record.integration_id || ""}`;
}

function answerText(delivery) {
  const a = delivery.answer;
  if (!a) return delivery.reason || "—";
  const head = a.code !== null ? `code ${a.code}` : `HTTP ${a.http_status}`;
  return a.message ? `${head}: ${a.message}` : head;
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

export async function showDebugger(main) {
  const { sources, integrations } = await sourcesAndIntegrations();
  const integrationNames = new Map(integrations.map((i) => [i.id, i.name]));
  const records = new Map();
  const sentBodies = new Map(); // per record: the exact request body (GET /events/{id})
  let selected = null;
  let controller = null;
  let paused = false;

  const sourcePick = h("select", {}, h("option", { value: "" }, "Any source"));
  for (const s of sources) sourcePick.append(h("option", { value: s.id }, s.name));
  const integrationPick = h("select", {}, h("option", { value: "" }, "Any integration"));
  for (const i of integrations) integrationPick.append(h("option", { value: i.id }, i.name));
  const box = h("input", {
    type: "search",
    id: "event-search",
    placeholder: "ORD-001, Purchase, jane@example.com, E.C.P.… 48h",
    spellcheck: "false",
    autocomplete: "off",
  });
  const handed = sessionStorage.getItem("gateway.debugEventId");
  if (handed) {
    box.value = handed;
    sessionStorage.removeItem("gateway.debugEventId");
  }
  let searching = null; // the parsed box while results of a search are shown
  const apply = h("button", { type: "submit" }, "Search");
  const liveState = h("span", { class: "live", id: "live-state", role: "status" }, "Connecting…");
  const pauseButton = h("button", { type: "button", class: "secondary" }, "Pause live view");
  const filters = h(
    "form",
    { class: "card filters search", "aria-label": "Search and filters", role: "search" },
    field("Search", box, {
      hint: "An event ID, order ID, event name, customer email or user ID, or ttclid; add a time range such as 48h (default 24h). Empty: the live view.",
    }),
    field("Source", sourcePick),
    field("Integration", integrationPick),
    h("div", { class: "actions" }, apply),
  );

  const tbody = h("tbody", {});
  const details = h("aside", { class: "card details", id: "event-details", "aria-labelledby": "details-title", hidden: true });
  const quality = h("section", { class: "card", "aria-labelledby": "quality-title" });
  const refused = h("section", { class: "card", id: "refused", "aria-labelledby": "refused-title" });

  function currentFilters() {
    return { source_id: sourcePick.value, integration_id: integrationPick.value };
  }

  function isTest(record) {
    return !!(record.hit && record.hit.test);
  }

  function drawRows() {
    const ordered = [...records.values()].sort((a, b) => b.seq - a.seq).slice(0, SHOWN);
    if (!ordered.length) {
      const text = searching
        ? searching.q
          ? `Nothing matches “${searching.q}” in the last ${searching.hours} hours.`
          : `Nothing in the last ${searching.hours} hours.`
        : "No event yet. Send a hit (or widen the filters); it appears here within a second.";
      clear(tbody, h("tr", {}, h("td", { colspan: "9", class: "empty", id: "events-empty" }, text)));
      return;
    }
    clear(
      tbody,
      ordered.map((record) => {
        const d = record.delivery;
        const integration = record.integration_id ? integrationNames.get(record.integration_id) || record.integration_id : "(none)";
        const open = h(
          "button",
          { type: "button", class: "secondary small", "aria-label": `Details of ${record.event_id} for ${integration}` },
          "Details",
        );
        open.addEventListener("click", () => {
          selected = keyOf(record);
          drawDetails(true);
        });
        const consent = record.consent;
        return h(
          "tr",
          {
            "data-event-id": record.event_id,
            "data-status": d.status,
            "data-test": isTest(record) ? "true" : null,
            class: keyOf(record) === selected ? "selected" : "",
          },
          h("td", { title: formatTime(record.received_at || d.updated_at), "data-label": "Received" }, formatClock(record.received_at || d.updated_at)),
          h("th", { scope: "row" }, h("code", {}, record.event_id)),
          h(
            "td",
            { "data-label": "Event" },
            record.event || (record.hit && record.hit.type) || "—",
            isTest(record) ? h("span", { class: "badge badge-test", title: "Sent by “Send a test event”, with a test event code" }, "Test") : null,
            record.tiktok_event ? h("div", { class: "sub" }, `→ ${record.tiktok_event}`) : null,
          ),
          h("td", { "data-label": "Integration" }, integration),
          h("td", { "data-label": "Consent" }, consent ? h("span", { class: `badge badge-${consent.decision}`, title: consent.reason }, consent.decision.replace("_", " ")) : "—"),
          h("td", { "data-label": "Delivery" }, h("span", { class: `badge badge-${d.status}` }, STATUS_LABELS[d.status] || d.status)),
          h("td", { class: "num", "data-label": "Attempts" }, d.attempts),
          h("td", { class: "answer", "data-label": "TikTok's answer" }, answerText(d)),
          h("td", { class: "row-actions" }, open),
        );
      }),
    );
  }

  function drawDetails(focus) {
    const record = selected && records.get(selected);
    if (!record) {
      details.hidden = true;
      return;
    }
    const d = record.delivery;
    const close = h("button", { type: "button", class: "secondary small" }, "Close");
    close.addEventListener("click", () => {
      selected = null;
      details.hidden = true;
      drawRows();
    });
    clear(
      details,
      h("div", { class: "title-row" }, h("h2", { id: "details-title", tabindex: "-1" }, `Event ${record.event_id}`), close),
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Integration"),
        h("dd", {}, record.integration_id ? integrationNames.get(record.integration_id) || record.integration_id : "none: the source has no enabled integration"),
        h("dt", {}, "Consent decision"),
        h(
          "dd",
          {},
          record.consent
            ? [h("span", { class: `badge badge-${record.consent.decision}` }, record.consent.decision.replace("_", " ")), " ", record.consent.reason]
            : "—",
        ),
        h("dt", {}, "Delivery"),
        h("dd", {}, `${STATUS_LABELS[d.status] || d.status}, ${d.attempts} attempt${d.attempts === 1 ? "" : "s"}, ${readableTime(d.updated_at)}`),
        d.reason ? [h("dt", {}, "Reason"), h("dd", {}, d.reason)] : null,
      ),
      isTest(record) ? h("p", {}, h("span", { class: "badge badge-test" }, "Test"), " A test send from the integration's form, with test event code ", h("code", {}, record.hit.test_event_code || "—"), ": it is not counted as delivered and not in match quality.") : null,
      h("div", { class: "panes" }, rawPane(record), factsPane(record), requestPane(record), answerPane(record)),
    );
    details.hidden = false;
    drawRows();
    if (focus) {
      details.scrollIntoView({ block: "start" });
      details.querySelector("h2").focus({ preventScroll: true });
    }
    const key = keyOf(record);
    if (record.payload && !isTest(record) && !sentBodies.has(key)) {
      sentBodies.set(key, null); // asked once per record
      loadSentBody(record).catch((error) => {
        sentBodies.delete(key); // the next look asks again
        notify(error.message, "error");
      });
    }
  }

  async function loadSentBody(record) {
    const found = await api.get(`/v1/admin/events/${encodeURIComponent(record.event_id)}`);
    for (const r of found.records) {
      if (r.request) sentBodies.set(keyOf(r), r.request);
    }
    // Only its pane changes: redrawing the whole view would take the focus from the heading.
    const shown = selected && records.get(selected);
    const old = details.querySelector("#pane-request");
    if (shown && old && shown.event_id === record.event_id) old.replaceWith(requestPane(shown));
  }

  function rawPane(record) {
    if (isTest(record)) return pane("pane-hit", "The test request", record.hit.request, pretty(record.hit.request));
    const hit = record.raw ? record.raw.hit : record.hit;
    return pane(
      "pane-hit",
      "The hit as received",
      hit,
      [
        h("p", { class: "hint" }, "Whole, as decoded; email, phone, names, address and user id are hashed."),
        pretty(hit),
        record.hit && record.hit.identity ? [h("p", { class: "hint" }, "What this identify hit taught (hashed):"), pretty({ identity: record.hit.identity })] : null,
      ],
    );
  }

  function factsPane(record) {
    const facts = record.raw && record.raw.request;
    if (!facts) return pane("pane-facts", "Request facts", undefined, h("p", {}, isTest(record) ? "A test send has no visitor request." : "Not kept for this record."));
    return pane(
      "pane-facts",
      "Request facts",
      facts,
      factList([
        ["Received", readableTime(facts.received_at)],
        ["Source", h("code", {}, facts.source_id)],
        ["Sent by", facts.from_server ? "a server (server key)" : "a browser"],
        ["IP", facts.ip],
        ["User agent", facts.user_agent],
        ["Locale", facts.locale],
        ["Cookies read", cookieText(facts.cookies_read)],
        ["Cookies set", cookieText(facts.cookies_set)],
      ]),
    );
  }

  function requestPane(record) {
    if (isTest(record)) return pane("pane-request", "TikTok request", record.hit.request, pretty(record.hit.request));
    if (!record.payload) return pane("pane-request", "TikTok request", undefined, h("p", {}, "Nothing was sent to this integration."));
    const body = sentBodies.get(keyOf(record));
    if (!body) return pane("pane-request", "TikTok request", record.payload, [h("p", { class: "hint" }, "Loading the envelope…"), pretty(record.payload)]);
    return pane(
      "pane-request",
      "TikTok request",
      body,
      [h("p", { class: "hint" }, "The body as posted, with the integration's current settings; the access token travels in a header and is never shown."), pretty(body)],
    );
  }

  function answerPane(record) {
    const d = record.delivery;
    const answer = d.answer;
    if (!answer) return pane("pane-answer", "TikTok's answer", undefined, h("p", {}, "None yet: the event was not sent (or not yet)."));
    return pane(
      "pane-answer",
      "TikTok's answer",
      answer,
      [
        factList([
          ["Answered", readableTime(d.updated_at)],
          ["HTTP status", answer.http_status === null ? "— (no answer)" : String(answer.http_status)],
          ["Code", answer.code === null ? "—" : String(answer.code)],
          ["Message", answer.message],
          ["Request ID", answer.request_id ? h("code", {}, answer.request_id) : null],
        ]),
        pretty(answer),
      ],
    );
  }

  function upsert(record) {
    records.set(keyOf(record), record);
    if (records.size > SHOWN * 2) {
      const oldest = [...records.values()].sort((a, b) => a.seq - b.seq).slice(0, records.size - SHOWN);
      for (const r of oldest) records.delete(keyOf(r));
    }
  }

  async function live(cursor, signal) {
    let wait = 1000;
    while (!signal.aborted) {
      try {
        liveState.textContent = "Connecting…";
        await readStream(
          `/v1/admin/events/stream${query({ ...currentFilters(), after: cursor })}`,
          (name, data, id) => {
            if (name === "ready") {
              liveState.textContent = "Live";
              liveState.className = "live live-on";
              wait = 1000;
            } else if (name === "record") {
              cursor = id;
              upsert(data);
              drawRows();
              if (selected === keyOf(data)) drawDetails(false);
              qualitySoon();
            }
          },
          signal,
        );
      } catch (error) {
        if (signal.aborted) return;
        if (error.status === 401) return;
      }
      if (signal.aborted) return;
      liveState.textContent = "Reconnecting…";
      liveState.className = "live live-off";
      await sleep(wait, signal);
      wait = Math.min(wait * 2, 15000);
    }
  }

  async function start() {
    if (controller) controller.abort();
    controller = new AbortController();
    const parsed = parseSearch(box.value);
    if (parsed.q || parsed.hours !== DEFAULT_HOURS) return runSearch(parsed);
    searching = null;
    pauseButton.hidden = false;
    const { records: recent, cursor } = await api.get(`/v1/admin/events${query({ ...currentFilters(), limit: SHOWN })}`);
    records.clear();
    for (const record of recent) upsert(record);
    drawRows();
    drawDetails(false);
    if (!paused) live(cursor, controller.signal);
    else liveState.textContent = "Paused";
  }

  // A search shows its results, not the live view. POST: an email typed here never sits in a URL.
  async function runSearch(parsed) {
    const found = await api.post("/v1/admin/events/search", { ...currentFilters(), q: parsed.q, hours: parsed.hours, limit: SHOWN });
    searching = parsed;
    records.clear();
    for (const record of found.records) upsert(record);
    liveState.textContent = `${found.records.length} found in the last ${found.hours} h`;
    liveState.className = "live";
    pauseButton.hidden = true;
    drawRows();
    drawDetails(false);
    return found;
  }

  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    act(apply, start, () => (searching ? `Searched the last ${searching.hours} hours.` : "Showing the live view."));
  });
  pauseButton.addEventListener("click", () => {
    paused = !paused;
    pauseButton.textContent = paused ? "Resume live view" : "Pause live view";
    if (paused) {
      if (controller) controller.abort();
      liveState.textContent = "Paused";
      liveState.className = "live live-off";
      notify("Live view paused.");
    } else {
      act(pauseButton, start, "Live view resumed.");
    }
  });

  // Requests the collection port refused store nothing, so the ledger has no record of them:
  // the gateway keeps the latest in memory, summarised (never a body or a key).
  async function drawRefused() {
    const sourceId = currentFilters().source_id;
    const found = await api.get(`/v1/admin/refused${query({ source_id: sourceId, limit: 50 })}`);
    const refresh = h("button", { type: "button", class: "secondary small" }, "Refresh");
    refresh.addEventListener("click", () => act(refresh, drawRefused, "Refused requests refreshed."));
    const sourceName = sources.find((s) => s.id === sourceId)?.name;
    const head = h(
      "div",
      { class: "title-row" },
      h("h2", { id: "refused-title" }, sourceName ? `Refused requests of ${sourceName}` : "Refused requests"),
      refresh,
    );
    const explain = h(
      "p",
      { class: "hint" },
      `Hits the gateway answered with an error (unknown source, a malformed body, a wrong server key…): nothing of them was stored or sent. The last ${found.capacity} of this process are kept in memory; a restart forgets them.`,
    );
    if (!found.refused.length) {
      clear(refused, head, explain, h("p", { class: "empty" }, "No refused request."));
      return;
    }
    clear(
      refused,
      head,
      explain,
      h(
        "div",
        { class: "table-wrap stacked" },
        h(
          "table",
          { class: "list stacked", id: "refused-requests" },
          h("caption", { class: "visually-hidden" }, "Refused requests"),
          h("thead", {}, h("tr", {}, ["Received", "Source", "Request", "Answer", "Error", "Hits"].map((l) => h("th", { scope: "col" }, l)))),
          h(
            "tbody",
            {},
            found.refused.map((r) =>
              h(
                "tr",
                { "data-code": r.code },
                h("td", { "data-label": "Received" }, formatClock(r.at)),
                h("td", { "data-label": "Source" }, r.source_id || "—"),
                h("td", { "data-label": "Request" }, h("code", {}, `${r.method} ${r.path}`)),
                h("td", { "data-label": "Answer" }, h("span", { class: "badge badge-paused" }, `HTTP ${r.status}`)),
                h("td", { "data-label": "Error", class: "error-text" }, h("strong", {}, r.code), ": ", r.message),
                h(
                  "td",
                  { "data-label": "Hits" },
                  r.summary.hits ? `${r.summary.hits} (${[...r.summary.types, ...r.summary.events].join(", ") || "—"})` : "—",
                ),
              ),
            ),
          ),
        ),
      ),
    );
  }

  // New events change the shares: redraw them shortly after, once per burst.
  let qualityTimer = null;
  function qualitySoon() {
    clearTimeout(qualityTimer);
    qualityTimer = setTimeout(() => drawQuality().catch(() => {}), 1000);
  }

  async function drawQuality() {
    const results = await Promise.all(integrations.map((i) => api.get(`/v1/admin/integrations/${i.id}/match-quality`)));
    const refresh = h("button", { type: "button", class: "secondary small" }, "Refresh");
    refresh.addEventListener("click", () => act(refresh, drawQuality, "Match quality refreshed."));
    const head = h("div", { class: "title-row" }, h("h2", { id: "quality-title" }, "Match quality"), refresh);
    const explain = h(
      "p",
      { class: "hint" },
      "Share of events sent to each integration that carried each identifier. TikTok attributes more events the more of them it gets: a low ttclid share means clicks are not being captured, low email/phone or a low user-id share of external_id means identify() is rarely called, and names and address come from identify() traits.",
    );
    if (!results.length) {
      clear(quality, head, h("p", {}, "No integration yet."));
      return;
    }
    clear(
      quality,
      head,
      explain,
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "list quality", id: "match-quality" },
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Integration"), h("th", { scope: "col" }, "Events"), SIGNALS.map((s) => h("th", { scope: "col", "data-signal": s }, SIGNAL_LABELS[s] || s)))),
          h(
            "tbody",
            {},
            results.map((result) =>
              h(
                "tr",
                {},
                h("th", { scope: "row" }, integrationNames.get(result.integration_id) || result.integration_id, h("div", { class: "sub" }, `last ${result.window_hours} h`)),
                h("td", { class: "num" }, result.events),
                SIGNALS.map((name) => {
                  const signal = result.signals[name];
                  if (signal.share === null) return h("td", { class: "num", "data-signal": name }, "—");
                  const percent = Math.round(signal.share * 100);
                  return h(
                    "td",
                    { class: "num", "data-signal": name },
                    h("meter", { min: "0", max: "1", low: "0.3", high: "0.7", optimum: "1", value: String(signal.share), "aria-label": `${name}: ${percent}%` }),
                    ` ${percent}%`,
                  );
                }),
              ),
            ),
          ),
        ),
      ),
    );
  }

  clear(
    main,
    h("div", { class: "title-row" }, h("h1", {}, "Event debugger"), h("div", { class: "actions" }, liveState, pauseButton)),
    h("p", { class: "hint" }, "Every hit, for every integration of its source: what consent decided, what was sent to TikTok, and what TikTok answered. Personal data appears only hashed."),
    filters,
    h(
      "div",
      { class: "debugger" },
      h(
        "div",
        { class: "table-wrap stacked" },
        h(
          "table",
          { class: "list stacked", id: "events" },
          h("caption", { class: "visually-hidden" }, "Recent events"),
          h(
            "thead",
            {},
            h("tr", {}, ["Received", "Event ID", "Event", "Integration", "Consent", "Delivery", "Attempts", "TikTok's answer", ""].map((l) => h("th", { scope: "col" }, l))),
          ),
          tbody,
        ),
      ),
      details,
    ),
    refused,
    quality,
  );
  onLeave(() => {
    if (controller) controller.abort();
    clearTimeout(qualityTimer);
  });
  sourcePick.addEventListener("change", () => drawRefused().catch((error) => notify(error.message, "error")));
  await start();
  drawRefused().catch((error) => notify(error.message, "error"));
  drawQuality().catch((error) => notify(error.message, "error"));
}
