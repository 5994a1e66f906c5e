/*! df.js: the gateway's browser tag. No dependencies, no build step, never throws into the page.
 *
 * Install it in <head>: the one-line stub queues calls made before the tag loads (run in order
 * once it has), then the tag itself, configured by its data- attributes:
 *
 *   <script>window._df=window._df||[];"page track identify consent".split(" ").forEach(function(m){_df[m]=_df[m]||function(){_df.push([m].concat([].slice.call(arguments)))}})</script>
 *   <script async src="https://collect.shop.example/df.js" data-source-id="src_abc123" data-auto-page="true"></script>
 *
 *   _df.page(properties?, options?)           a page view (data-auto-page="true" sends one on load)
 *   _df.track(event, properties?, options?)   e.g. _df.track("Product Added", {product_id: "SKU-A", price: 9.5, currency: "USD"})
 *   _df.identify(userId, traits?, options?)   traits: {email, phone}; hashed by the gateway, kept in its cookie
 *   _df.consent({advertising: true, ...})     merged into the consent state every later hit carries
 *
 * page, track and identify return the hit's message_id, which the gateway sends to TikTok as the
 * event_id; options.message_id chooses it, options.callback(message_id) receives it (also for calls
 * queued by the stub). Give it to the TikTok pixel so TikTok de-duplicates the two:
 *
 *   _df.track("Order Completed", props, {callback: function (id) { ttq.track("CompletePayment", p, {event_id: id}) }})
 *
 * Hits go to the directory the tag was loaded from (https://collect.shop.example/v1/t, or /df/v1/t
 * behind a proxied /df/ path) with navigator.sendBeacon, a text/plain body that needs no CORS
 * preflight and still leaves while the page unloads; else fetch with keepalive and credentials.
 * The tag reads and writes no cookie or storage itself: the gateway keeps the ids in first-party
 * cookies, so where cookies are blocked the hits still go, without the ids the browser cannot keep.
 */
(function (w, d, n) {
  "use strict";
  // The gateway refuses longer page fields (and a whole hit with them): clip rather than lose it.
  var MAX_FIELD = 2048;
  var ENDPOINTS = { page: "p", track: "t", identify: "i" };
  var queued = w._df;
  if (queued && queued.loaded) return; // the tag included twice

  var script = d.currentScript || d.querySelector("script[data-source-id]");
  var attr = function (name) {
    return script ? script.getAttribute("data-" + name) : null;
  };
  var sourceId = attr("source-id");
  // ".../df.js?v=2" -> "...": the hit endpoints live beside the tag, whatever the host or path.
  var base = script ? script.src.replace(/[?#].*$/, "").replace(/\/[^\/]*$/, "") : "";
  var consent = null;
  var noop = function () {};

  function uuid() {
    var c = w.crypto;
    var b = new Uint8Array(16);
    var s = "";
    var i;
    if (c && c.randomUUID) return c.randomUUID();
    if (c && c.getRandomValues) c.getRandomValues(b);
    else for (i = 0; i < 16; i++) b[i] = (Math.random() * 256) | 0;
    b[6] = (b[6] & 15) | 64; // version 4
    b[8] = (b[8] & 63) | 128; // RFC 4122 variant
    for (i = 0; i < 16; i++) s += (i == 4 || i == 6 || i == 8 || i == 10 ? "-" : "") + (b[i] + 256).toString(16).slice(1);
    return s;
  }

  function clip(value) {
    return String(value || "").slice(0, MAX_FIELD);
  }

  function object(value) {
    return value && typeof value == "object" ? value : undefined;
  }

  function post(url, body) {
    try {
      if (n.sendBeacon && n.sendBeacon(url, body)) return;
    } catch (e) {} // a refused beacon (too large, or a page policy): fall through
    if (w.fetch) {
      w.fetch(url, { method: "POST", body: body, keepalive: true, credentials: "include" })["catch"](noop);
    } else {
      var x = new XMLHttpRequest();
      x.open("POST", url, true);
      x.withCredentials = true;
      x.send(body);
    }
  }

  function send(type, hit, options) {
    options = object(options) || {};
    hit.type = type;
    hit.source_id = sourceId;
    hit.message_id = options.message_id ? String(options.message_id) : uuid();
    hit.context = {
      page: { url: clip(w.location.href), referrer: clip(d.referrer), title: clip(d.title) },
      locale: n.language
    };
    if (consent) hit.context.consent = consent;
    post(base + "/v1/" + ENDPOINTS[type], JSON.stringify(hit));
    if (typeof options.callback == "function") options.callback(hit.message_id);
    return hit.message_id;
  }

  // Every entry point swallows its own errors: a tag must never break the page it measures.
  function guard(fn) {
    return function () {
      try {
        return fn.apply(null, arguments);
      } catch (e) {}
    };
  }

  var api = {
    loaded: true,
    page: guard(function (properties, options) {
      return send("page", { properties: object(properties) }, options);
    }),
    track: guard(function (event, properties, options) {
      if (event) return send("track", { event: String(event), properties: object(properties) }, options);
    }),
    identify: guard(function (userId, traits, options) {
      var hit = { traits: object(traits) };
      if (userId != null && userId !== "") hit.user_id = String(userId);
      return send("identify", hit, options);
    }),
    consent: guard(function (categories) {
      var next = {};
      var key;
      for (key in consent) next[key] = consent[key];
      // Only booleans: the gateway refuses anything else, and "false" must never read as true.
      for (key in object(categories)) if (typeof categories[key] == "boolean") next[key] = categories[key];
      consent = next;
    }),
    // ["track", "Product Added", {...}]: how the stub queues a call, and a tag manager's way in.
    push: guard(function (call) {
      return api[call[0]].apply(null, [].slice.call(call, 1));
    })
  };

  w._df = api;
  if (queued && queued.length) for (var i = 0; i < queued.length; i++) api.push(queued[i]);
  // After the queue, so a consent given before the tag loaded applies to this page view.
  if (attr("auto-page") == "true") api.page();
})(window, document, navigator);
