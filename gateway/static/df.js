/*! df.js, the gateway's browser tag: no dependencies, no build step. Documented in README.md
 * ("Browser tag"). Install in <head>: the stub (calls made before the tag loads are queued and
 * run in order), then the tag:
 *   <script>window._df=window._df||[];"page track identify consent".split(" ").forEach(function(m){_df[m]=_df[m]||function(){_df.push([m].concat([].slice.call(arguments)))}})</script>
 *   <script async src="https://collect.shop.example/df.js" data-source-id="src_abc123" data-auto-page="true"></script>
 * _df.page(props?, opts?), _df.track(event, props?, opts?), _df.identify(userId, traits?, opts?)
 * return the hit's message_id (TikTok's event_id; opts.message_id sets it, opts.callback gets
 * it); _df.consent({advertising: true}) sets what later hits carry. _df.answers(fn) (for a test
 * page: it sends with fetch, not a beacon) calls fn({status, message_ids, error}) per request.
 * The tag touches no cookie or storage (the gateway sets the cookies), so it works where cookies
 * are blocked.
 */
(function (w, d, n) {
  "use strict";
  // The gateway refuses longer page fields (and a whole hit with them): clip rather than lose it.
  var MAX_FIELD = 2048;
  var MAX_BATCH = 20; // well within the gateway's 100 hits and a beacon's 64 KB
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
  var pending = []; // [endpoint, JSON, message_id] of the hits made in the current task
  var listeners = []; // _df.answers: who hears each request's HTTP answer
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

  function tell(ids, status, text) {
    var error = null;
    try {
      error = JSON.parse(text).error || null;
    } catch (e) {}
    for (var i = 0; i < listeners.length; i++) guard(listeners[i])({ status: status, message_ids: ids, error: error });
  }

  function post(url, body, ids) {
    if (listeners.length && w.fetch) {
      // A beacon's answer cannot be read: a page that asked for the answers gets a fetch.
      w.fetch(url, { method: "POST", body: body, keepalive: true, credentials: "include" }).then(
        function (r) {
          return r.text().then(function (t) {
            tell(ids, r.status, t);
          });
        },
        function () {
          tell(ids, 0, "");
        }
      );
      return;
    }
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

  // Hits made in one task leave together at its end, in one request: on a first visit (no
  // cookie yet) the gateway then gives them one browser id rather than one each. A microtask
  // still runs inside a click or pagehide handler, before the page can unload.
  function flush() {
    var hits = pending;
    var bodies = [];
    var ids = [];
    pending = [];
    for (var i = 0; i < hits.length; i++) {
      bodies.push(hits[i][1]);
      ids.push(hits[i][2]);
    }
    if (hits.length == 1) post(base + "/v1/" + hits[0][0], bodies[0], ids);
    else if (hits.length) post(base + "/v1/batch", '{"batch":[' + bodies.join(",") + "]}", ids);
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
    var body = JSON.stringify(hit); // here, so a hit that cannot be sent fails alone
    if (!pending.length) {
      if (w.Promise) w.Promise.resolve().then(guard(flush));
      else setTimeout(guard(flush), 0);
    }
    pending.push([ENDPOINTS[type], body, hit.message_id]);
    if (pending.length >= MAX_BATCH) flush();
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
    answers: guard(function (listener) {
      if (typeof listener == "function") listeners.push(listener);
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
