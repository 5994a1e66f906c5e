// Charts drawn as SVG here (no library, nothing from a CDN): stacked bars for counts per time
// bucket, lines for values over time. Colours come from CSS classes (the page's CSP allows no
// inline style); every bar and point has a <title> for the pointer, and the figure says what
// it shows in words for a screen reader.

const NS = "http://www.w3.org/2000/svg";
const WIDTH = 640;
const MARGIN = { top: 10, right: 10, bottom: 22, left: 44 };

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) el.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clockOf(iso, withDate = false) {
  const date = new Date(iso);
  const time = date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  return withDate ? `${date.toLocaleDateString(undefined, { month: "short", day: "numeric" })} ${time}` : time;
}

// A round upper bound for the axis whose half is round too: 2, 4, 6, 8, 10, 20, 40…
function niceMax(value) {
  if (!(value > 0)) return 2;
  const step = 10 ** Math.floor(Math.log10(value));
  for (const m of [2, 4, 6, 8, 10]) if (value <= m * step) return m * step;
  return 10 * step;
}

function frame(height, yMax, format, points, ariaLabel) {
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = height - MARGIN.top - MARGIN.bottom;
  const root = svg("svg", { viewBox: `0 0 ${WIDTH} ${height}`, class: "chart-svg", role: "img", "aria-label": ariaLabel, preserveAspectRatio: "none" });
  const axes = svg("g", { class: "chart-axes" });
  for (const fraction of [0, 0.5, 1]) {
    const y = MARGIN.top + plotH * (1 - fraction);
    axes.append(
      svg("line", { x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y, y2: y, class: fraction ? "grid" : "baseline" }),
      svg("text", { x: MARGIN.left - 6, y: y + 4, "text-anchor": "end" }, format(yMax * fraction)),
    );
  }
  if (points.length) {
    const last = points.length - 1;
    for (const [index, anchor] of [[0, "start"], [Math.floor(last / 2), "middle"], [last, "end"]]) {
      const x = MARGIN.left + (plotW * (index + 0.5)) / points.length;
      axes.append(svg("text", { x, y: height - 6, "text-anchor": anchor }, clockOf(points[index].at)));
    }
  }
  root.append(axes);
  return { root, plotW, plotH };
}

function figure(title, legend, chart, summary) {
  const caption = document.createElement("figcaption");
  const heading = document.createElement("span");
  heading.className = "chart-title";
  heading.textContent = title;
  const keys = document.createElement("span");
  keys.className = "chart-legend";
  for (const item of legend) {
    const key = document.createElement("span");
    key.className = `legend-item ${item.cls}`;
    key.textContent = item.label;
    keys.append(key);
  }
  caption.append(heading, keys);
  const fig = document.createElement("figure");
  fig.className = "chart";
  const words = document.createElement("p");
  words.className = "visually-hidden";
  words.textContent = summary;
  fig.append(caption, chart, words);
  return fig;
}

// Counts per bucket, one coloured segment per series, stacked.
export function stackedBars({ title, points, series, height = 170, summary }) {
  const totals = points.map((p) => series.reduce((sum, s) => sum + (p[s.key] || 0), 0));
  const yMax = niceMax(Math.max(0, ...totals));
  const { root, plotW, plotH } = frame(height, yMax, (v) => String(Math.round(v)), points, title);
  const barW = plotW / Math.max(points.length, 1);
  const bars = svg("g", { class: "chart-bars" });
  points.forEach((point, index) => {
    let base = 0;
    for (const s of series) {
      const value = point[s.key] || 0;
      if (!value) continue;
      const y = MARGIN.top + plotH * (1 - (base + value) / yMax);
      const h = (plotH * value) / yMax;
      bars.append(
        svg(
          "rect",
          { x: MARGIN.left + index * barW + barW * 0.1, y, width: Math.max(barW * 0.8, 1), height: Math.max(h, 0.5), class: `seg ${s.cls}`, "data-series": s.key },
          svg("title", {}, `${clockOf(point.at, true)}: ${value} ${s.label.toLowerCase()}`),
        ),
      );
      base += value;
    }
  });
  root.append(bars);
  return figure(title, series, root, summary);
}

// Values over time, one line per series; a bucket without a value breaks the line.
export function lines({ title, points, series, height = 150, yMax = null, format = (v) => String(v), summary }) {
  const values = points.flatMap((p) => series.map((s) => s.value(p))).filter((v) => v !== null && v !== undefined);
  const top = yMax ?? niceMax(Math.max(0, ...values));
  const { root, plotW, plotH } = frame(height, top, format, points, title);
  const step = plotW / Math.max(points.length, 1);
  const group = svg("g", { class: "chart-lines" });
  for (const s of series) {
    let path = "";
    let pen = false;
    const dots = svg("g", { class: `dots ${s.cls}` });
    points.forEach((point, index) => {
      const value = s.value(point);
      if (value === null || value === undefined) {
        pen = false;
        return;
      }
      const x = MARGIN.left + step * (index + 0.5);
      const y = MARGIN.top + plotH * (1 - Math.min(value, top) / top);
      path += `${pen ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)} `;
      pen = true;
      dots.append(svg("circle", { cx: x, cy: y, r: 2.5 }, svg("title", {}, `${clockOf(point.at, true)}: ${s.label} ${format(value)}`)));
    });
    if (path) group.append(svg("path", { d: path.trim(), class: `line ${s.cls}`, "data-series": s.key, fill: "none" }));
    group.append(dots);
  }
  root.append(group);
  return figure(title, series, root, summary);
}
