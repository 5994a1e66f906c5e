// Sources: the sites (or backends) that send hits, and the snippet a site pastes in.

import { api } from "./api.js";
import { act, clear, clearFieldErrors, confirmAction, field, formatTime, h, notify, showError } from "./dom.js";

// The stub exactly as df.js documents it in its header: calls made before the tag loads are
// queued, not lost (tests/ui checks the two stay the same).
export const TAG_STUB =
  'window._df=window._df||[];"page track identify consent".split(" ").forEach(function(m){_df[m]=_df[m]||function(){_df.push([m].concat([].slice.call(arguments)))}})';

const COLLECT_KEY = "gateway.collectAddress";

// The gateway says where its collection endpoint is public (GATEWAY_PUBLIC_URL, else the
// address this page was reached at, with the collection port); the operator may still correct
// it for this tab.
async function defaultCollectAddress() {
  const typed = sessionStorage.getItem(COLLECT_KEY);
  if (typed) return { address: typed, configured: false };
  const { public_url: address, configured } = await api.get("/v1/admin/public-url");
  return { address, configured };
}

export function snippetFor(sourceId, collectAddress) {
  const base = collectAddress.replace(/\/+$/, "");
  return (
    `<script>${TAG_STUB}</script>\n` +
    `<script async src="${base}/df.js" data-source-id="${sourceId}" data-auto-page="true"></script>`
  );
}

export async function showSources(main) {
  const { sources } = await api.get("/v1/admin/sources");
  const rows = sources.map((source) => {
    const remove = h("button", { type: "button", class: "danger", "aria-label": `Delete ${source.name}` }, "Delete");
    remove.addEventListener("click", async () => {
      const sure = await confirmAction(
        `Delete the source “${source.name}” (${source.id})? Its integrations, their queued events and dead letters go with it, and hits naming it are refused.`,
      );
      if (!sure) {
        notify("Nothing was deleted.");
        return;
      }
      await act(remove, () => api.del(`/v1/admin/sources/${source.id}`), `${source.name} deleted.`);
      showSources(main);
    });
    return h(
      "tr",
      {},
      h("th", { scope: "row" }, h("a", { href: `#/sources/${source.id}` }, source.name), h("div", { class: "sub" }, source.id)),
      h("td", {}, source.allowed_origins.length ? source.allowed_origins.join(", ") : "—"),
      h("td", {}, source.cookie_domain || "—"),
      h("td", {}, source.consent_default),
      h("td", {}, source.default_phone_region || "—"),
      h("td", {}, formatTime(source.created_at)),
      h(
        "td",
        { class: "row-actions" },
        h("a", { class: "button secondary", href: `#/sources/${source.id}`, "aria-label": `Edit ${source.name}` }, "Edit"),
        remove,
      ),
    );
  });
  clear(
    main,
    h("div", { class: "title-row" }, h("h1", {}, "Sources"), h("div", { class: "actions" }, h("a", { class: "button", href: "#/sources/new" }, "Add Source"))),
    sources.length
      ? h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            { class: "list", id: "sources" },
            h("caption", { class: "visually-hidden" }, "Sources"),
            h(
              "thead",
              {},
              h(
                "tr",
                {},
                ["Source", "Allowed origins", "Cookie domain", "Consent default", "Phone region", "Created", "Actions"].map((label) =>
                  h("th", { scope: "col" }, label),
                ),
              ),
            ),
            h("tbody", {}, rows),
          ),
        )
      : h("div", { class: "empty card" }, h("p", {}, "No source yet: a source is a site (or a shop's backend) that sends hits."), h("a", { class: "button", href: "#/sources/new" }, "Add Source")),
  );
}

async function snippetSection(sourceId) {
  const { address: initial, configured } = await defaultCollectAddress();
  const address = h("input", { type: "url", value: initial, spellcheck: "false" });
  const code = h("pre", { class: "snippet", id: "snippet", tabindex: "0" }, h("code", {}, snippetFor(sourceId, address.value)));
  address.addEventListener("input", () => {
    sessionStorage.setItem(COLLECT_KEY, address.value);
    clear(code, h("code", {}, snippetFor(sourceId, address.value)));
  });
  const copy = h("button", { type: "button", class: "secondary" }, "Copy snippet");
  copy.addEventListener("click", async () => {
    const text = code.textContent;
    try {
      await navigator.clipboard.writeText(text);
      notify("Snippet copied.");
    } catch {
      const range = document.createRange();
      range.selectNodeContents(code);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      notify("Snippet selected: press Ctrl+C (⌘C) to copy it.");
    }
  });
  return h(
    "section",
    { class: "card", "aria-labelledby": "snippet-title" },
    h("h2", { id: "snippet-title" }, "Install on your site"),
    h("p", {}, "Paste this into the ", h("code", {}, "<head>"), " of every page. It sends a page view on load; call ", h("code", {}, "_df.track(…)"), " for carts and orders and ", h("code", {}, "_df.consent({advertising: true})"), " once the visitor agrees."),
    field("Gateway address (as your site reaches the collection port)", address, {
      hint: configured
        ? "Set by GATEWAY_PUBLIC_URL. Change it here only for this snippet."
        : "Taken from the address of this page; set GATEWAY_PUBLIC_URL to the one your site reaches (for example https://collect.shop.example, or https://shop.example/df behind your web server).",
    }),
    code,
    h("div", { class: "actions" }, copy),
  );
}

export async function showSourceForm(main, id) {
  const current = id ? await api.get(`/v1/admin/sources/${id}`) : null;
  const creating = current === null;
  const sourceId = h("input", { type: "text", value: current ? current.id : "", placeholder: "generated, e.g. src_3f2a9c1b7d4e", spellcheck: "false", disabled: !creating });
  const name = h("input", { type: "text", value: current ? current.name : "", required: true });
  const origins = h("textarea", { rows: "3", spellcheck: "false", placeholder: "https://shop.example" });
  origins.value = current ? current.allowed_origins.join("\n") : "";
  const cookieDomain = h("input", { type: "text", value: current?.cookie_domain || "", spellcheck: "false", placeholder: "shop.example" });
  const consentDefault = h("select", {}, h("option", { value: "deny" }, "deny: no consent given means no event sent"), h("option", { value: "grant" }, "grant: no consent given means every integration receives it"));
  consentDefault.value = current ? current.consent_default : "deny";
  const region = h("input", { type: "text", value: current?.default_phone_region || "", maxlength: "2", placeholder: "US", spellcheck: "false" });
  const eventSource = h(
    "select",
    {},
    h("option", { value: "web" }, "web: a website (with the TikTok pixel)"),
    h("option", { value: "app" }, "app: a mobile app"),
    h("option", { value: "offline" }, "offline: store or call-center sales"),
    h("option", { value: "crm" }, "crm: lead stages from a CRM"),
  );
  eventSource.value = current ? current.event_source : "web";
  const eventSourceId = h("input", { type: "text", value: current?.event_source_id || "", spellcheck: "false", placeholder: "the integration's pixel code" });
  const appId = h("input", { type: "text", value: current?.app_id || "", spellcheck: "false", placeholder: "343200656 or com.example.shop" });

  const save = h("button", { type: "submit" }, "Save");
  const form = h(
    "form",
    { class: "card form", novalidate: true },
    h("p", { class: "form-error", role: "alert", tabindex: "-1", hidden: true }),
    field("Source ID", sourceId, { name: "id", hint: creating ? "Optional: letters, digits, _ and -. Left empty, one is generated." : "The id hits name; it cannot change." }),
    field("Name", name, { name: "name" }),
    field("Allowed origins", origins, { name: "allowed_origins", hint: "One per line: the sites whose pages send hits (for CORS), e.g. https://shop.example." }),
    field("Cookie domain", cookieDomain, { name: "cookie_domain", hint: "Optional: shop.example shares the cookies between www.shop.example and collect.shop.example." }),
    field("Consent default", consentDefault, { name: "consent_default", hint: "For hits that carry no consent object." }),
    field("Default phone region", region, { name: "default_phone_region", hint: "Optional: national phone numbers are read in this region (e.g. US, DE)." }),
    field("Event source", eventSource, { name: "event_source", hint: "Where the events happen, as TikTok files them." }),
    field("TikTok app or event set ID", eventSourceId, { name: "event_source_id", hint: "Web: leave empty to use each integration's pixel code. App: the TikTok app ID. Offline and CRM: the event set ID." }),
    field("App store ID", appId, { name: "app_id", hint: "App sources only: the app's App Store number or Android package name." }),
    h("div", { class: "actions" }, save, h("a", { class: "button secondary", href: "#/sources" }, "Cancel")),
  );

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    const body = {
      name: name.value.trim(),
      allowed_origins: origins.value.split(/[\n,]/).map((o) => o.trim()).filter(Boolean),
      cookie_domain: cookieDomain.value.trim() || null,
      consent_default: consentDefault.value,
      default_phone_region: region.value.trim().toUpperCase() || null,
      event_source: eventSource.value,
      event_source_id: eventSourceId.value.trim() || null,
      app_id: appId.value.trim() || null,
    };
    save.disabled = true;
    try {
      if (creating) {
        if (sourceId.value.trim()) body.id = sourceId.value.trim();
        const created = await api.post("/v1/admin/sources", body);
        notify(`Source “${created.name}” saved.`);
        await showCreated(main, created);
      } else {
        await api.patch(`/v1/admin/sources/${current.id}`, body);
        notify(`Source “${body.name}” saved.`, "ok", { carry: true });
        location.hash = "#/sources";
      }
    } catch (error) {
      showError(form, error);
    } finally {
      save.disabled = false;
    }
  });

  const parts = [h("h1", {}, creating ? "Add Source" : `Edit ${current.name}`), form];
  if (!creating) parts.push(await snippetSection(current.id));
  clear(main, parts);
  (creating ? name : name).focus();
}

async function showCreated(main, source) {
  const snippet = await snippetSection(source.id);
  clear(
    main,
    h("h1", {}, `Source “${source.name}” added`),
    h(
      "section",
      { class: "card callout", "aria-labelledby": "key-title" },
      h("h2", { id: "key-title" }, "Server key (shown once)"),
      h("p", {}, "A shop's backend sends hits with ", h("code", {}, "Authorization: Bearer <server key>"), ". Keep it now: the gateway stores only its hash."),
      h("pre", { class: "snippet", tabindex: "0" }, h("code", {}, source.server_key)),
    ),
    snippet,
    h(
      "div",
      { class: "actions" },
      h("a", { class: "button", href: "#/integrations/new/tiktok" }, "Add its TikTok integration"),
      h("a", { class: "button secondary", href: "#/sources" }, "Back to sources"),
    ),
  );
  main.querySelector("h1").focus();
}
