/* citygrid planners' map: every layer loads from the API, filters apply without a reload.
 * Chinese first, with an English switch. window.citygrid exposes state for tests and the console. */
(function () {
  "use strict";

  var T = {
    zh: {
      title: "城市管理综合执法地图", subdistricts: "街道", communities: "社区", grids: "网格",
      streets: "街道路网（按街长着色）", rivers: "河道", markets: "市场", stalls: "摊点",
      illegal_buildings: "违法建筑（按状态）", heat: "案件热力图", hotspots: "热点分析 (Gi*)",
      choropleth: "网格考核指标", filters: "筛选", from: "起", to: "止", category: "大类", item: "小项",
      subdistrict: "街道", status: "案件状态", all: "全部", lang: "English", legend: "图例",
      hot: "热点", cold: "冷点", confidence: "置信度", owner: "责任链", grid: "网格", community: "社区",
      squad: "执法中队", gridMember: "网格员", streetChief: "街长", generalChief: "总街长", riverChief: "河长",
      subdistrictChief: "街道主任", ambiguous: "位于网格边界", outside: "网格外", notCovered: "不在网格覆盖范围内",
      headcount: "人", score: "指标", noScores: "无考核数据", period: "考核期",
      closure_rate: "结案率", on_time_rate: "按期结案率", rework_rate: "返工率", satisfaction_rate: "满意率",
      loading: "加载中…", noStreetChief: "（无街长，由街道主任负责）", metres: "米",
      key: "密钥", signIn: "登录", signOut: "退出", anonymous: "公众（未登录）", keyRefused: "密钥无效或已吊销",
      needsScores: "考核指标需要规划、指挥中心或管理员密钥",
      roles: { "public": "公众", grid_member: "网格员", squad: "执法中队", dispatcher: "指挥中心", planner: "规划", admin: "管理员" }
    },
    en: {
      title: "citygrid map", subdistricts: "Subdistricts", communities: "Communities", grids: "Grids",
      streets: "Streets (by street chief)", rivers: "Rivers", markets: "Markets", stalls: "Stalls",
      illegal_buildings: "Illegal buildings (by status)", heat: "Incident heat map", hotspots: "Hotspots (Gi*)",
      choropleth: "Grid scores", filters: "Filters", from: "From", to: "To", category: "Category", item: "Item",
      subdistrict: "Subdistrict", status: "Case status", all: "All", lang: "中文", legend: "Legend",
      hot: "Hot spot", cold: "Cold spot", confidence: "confidence", owner: "Responsibility", grid: "Grid",
      community: "Community", squad: "Squad", gridMember: "Grid member", streetChief: "Street chief",
      generalChief: "General street chief", riverChief: "River chief", subdistrictChief: "Subdistrict chief",
      ambiguous: "on a grid boundary", outside: "outside the grids", notCovered: "not covered by any grid",
      headcount: "people", score: "Score", noScores: "no scores", period: "Period",
      closure_rate: "Closure rate", on_time_rate: "On-time closure rate", rework_rate: "Rework rate",
      satisfaction_rate: "Satisfaction rate", loading: "loading…",
      noStreetChief: " (no street chief: the subdistrict chief answers)", metres: "m",
      key: "Key", signIn: "Sign in", signOut: "Sign out", anonymous: "public (not signed in)",
      keyRefused: "the key is unknown or revoked", needsScores: "scores need a planner, dispatcher or admin key",
      roles: { "public": "public", grid_member: "grid member", squad: "squad", dispatcher: "dispatcher", planner: "planner", admin: "admin" }
    }
  };
  var BINS = { "3": "#b2182b", "2": "#ef8a62", "1": "#fddbc7", "-1": "#d1e5f0", "-2": "#67a9cf", "-3": "#2166ac" };
  var LAYER_ORDER = ["subdistricts", "communities", "grids", "streets", "rivers", "markets", "stalls",
    "illegal_buildings", "heat", "hotspots", "choropleth"];
  var DEFAULT_ON = ["subdistricts", "grids", "streets", "rivers", "markets", "stalls", "illegal_buildings",
    "heat", "hotspots"];

  var state = { counts: {}, loaded: {}, drawnAt: {}, errors: [], requests: 0, caller: null, notices: [] };
  // The API key, for this browser tab only (sessionStorage): phone numbers in the owner popup, and the scores.
  var KEY_STORE = "citygrid.key";
  var apiKey = (function () { try { return sessionStorage.getItem(KEY_STORE) || ""; } catch (e) { return ""; } })();
  var map, config, lang, overlays = {}, control, legend, panel, filters, callerReady;

  function t(key) { return (T[lang] && T[lang][key]) || key; }
  function label(entry) { return entry ? (lang === "zh" ? entry.zh : entry.en) : ""; }
  function esc(text) {
    return String(text == null ? "" : text).replace(/[&<>"]/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c];
    });
  }

  function headers(accept) {
    var h = { Accept: accept || "application/json" };
    if (apiKey) { h["X-API-Key"] = apiKey; }
    return h;
  }

  function get(url) {
    state.requests += 1;
    return fetch(url, { headers: headers() }).then(function (response) {
      if (!response.ok) {
        var error = new Error(url + " → HTTP " + response.status);
        error.status = response.status;
        throw error;
      }
      return response.json();
    });
  }

  function setKey(value) {
    try {
      if (value) { sessionStorage.setItem(KEY_STORE, value); } else { sessionStorage.removeItem(KEY_STORE); }
    } catch (e) { /* storage refused: the key lasts until the page reloads */ }
    location.reload();  // every layer and popup asks again with the new key
  }

  function query(params) {
    var parts = [];
    Object.keys(params).forEach(function (key) {
      var value = params[key];
      if (value !== null && value !== undefined && value !== "") {
        parts.push(encodeURIComponent(key) + "=" + encodeURIComponent(value));
      }
    });
    return parts.length ? "?" + parts.join("&") : "";
  }

  // The 止/To day is included, as the exports' *_to dates are: the API's "to" is exclusive, so it is sent the
  // start of the next day (Beijing time).
  function dayAfter(day) {
    var next = new Date(day + "T00:00:00Z");
    next.setUTCDate(next.getUTCDate() + 1);
    return next.toISOString().slice(0, 10);
  }

  function incidentFilters() {
    return {
      from: filters.from ? filters.from + "T00:00:00+08:00" : null,
      to: filters.to ? dayAfter(filters.to) + "T00:00:00+08:00" : null,
      category: filters.item ? null : filters.category,
      item: filters.item, subdistrict: filters.subdistrict, status: filters.status
    };
  }

  function bboxParam() {
    var b = map.getBounds();
    return [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].map(function (v) { return v.toFixed(6); }).join(",");
  }

  function done(name, count) {
    state.counts[name] = count;
    state.loaded[name] = true;
    state.drawnAt[name] = Math.round(performance.now());  // ms since navigation, for benchmarks/map.py
    var pending = DEFAULT_ON.filter(function (n) { return !state.loaded[n]; });
    if (!pending.length) { document.body.setAttribute("data-ready", "true"); }
  }

  function fail(name) {
    return function (error) {
      state.errors.push(name + ": " + error.message);
      console.warn("citygrid", name, error.message);
    };
  }

  // ---- vector layers from GeoJSON ---------------------------------------------------------------

  // A layer that is off by default loads when it is first switched on, not with the page.
  function boundary(name, style, tooltip) {
    var layer = L.geoJSON(null, { style: style, onEachFeature: function (f, l) {
      if (tooltip) { l.bindTooltip(function () { return tooltip(f.properties); }, { sticky: true }); }
    } });
    var requested = false;
    function load() {
      if (requested) { return; }
      requested = true;
      get(config.api.layers + "/" + name + "?limit=10000").then(function (fc) {
        layer.addData(fc);
        done(name, fc.features.length);
      }).catch(fail(name));
    }
    if (DEFAULT_ON.indexOf(name) >= 0) { load(); } else { layer.on("add", load); }
    return layer;
  }

  function chiefColour(id) {
    var hash = 0;
    for (var i = 0; i < id.length; i += 1) { hash = (hash * 31 + id.charCodeAt(i)) % 360; }
    return "hsl(" + hash + ",70%,42%)";
  }

  function streetsLayer() {
    var layer = L.geoJSON(null);
    Promise.all([get(config.api.layers + "/streets?limit=10000"), get(config.api.chiefs)]).then(function (r) {
      var chiefs = {};
      r[1].forEach(function (c) { chiefs[c.code] = c; });
      layer.options.style = function (f) {
        var chief = chiefs[f.properties.code];
        return { color: chief ? chiefColour(chief.chief_id) : "#9e9e9e", weight: chief ? 4 : 2, opacity: 0.85 };
      };
      layer.options.onEachFeature = function (f, l) {
        l.bindTooltip(function () {
          var chief = chiefs[f.properties.code];
          return esc(f.properties.name) + "<br>" + t("streetChief") + "：" +
            (chief ? esc(chief.chief_name) : t("noStreetChief"));
        }, { sticky: true });
      };
      layer.addData(r[0]);
      done("streets", r[0].features.length);
    }).catch(fail("streets"));
    return layer;
  }

  function stallsLayer() {
    var cluster = L.markerClusterGroup({ chunkedLoading: true, maxClusterRadius: 45 });
    function load() {
      get(config.api.layers + "/stalls" + query({ bbox: bboxParam(), limit: 10000 })).then(function (fc) {
        cluster.clearLayers();
        var markers = fc.features.map(function (f) {
          var c = f.geometry.coordinates;
          return L.circleMarker([c[1], c[0]], { radius: 5, color: f.properties.licensed ? "#388e3c" : "#f57c00",
            weight: 1, fillOpacity: 0.8 }).bindTooltip(esc(f.properties.kind));
        });
        cluster.addLayers(markers);
        done("stalls", markers.length);
      }).catch(fail("stalls"));
    }
    cluster.reload = load;
    load();
    return cluster;
  }

  // ---- vector tiles -------------------------------------------------------------------------------
  // Footprints come as Mapbox Vector Tiles (ST_AsMVT) and are drawn straight onto one canvas per tile, one
  // path per status colour. A generic per-feature renderer (Leaflet.VectorGrid: a Leaflet path object, a fill
  // and a stroke per footprint) spent about two seconds on the 100,000 footprints of the whole city at zoom 14;
  // here a tile is one decode and two canvas calls per colour. Tiles are 512 pixels (the server's tile one zoom
  // up), so the city is a quarter as many requests.

  function readVarint(buf, pos) {
    var value = 0, shift = 0, byte;
    do {
      byte = buf[pos.i++];
      value += (byte & 0x7f) * Math.pow(2, shift);
      shift += 7;
    } while (byte >= 0x80);
    return value;
  }

  function skipField(buf, pos, wire) {
    if (wire === 0) { readVarint(buf, pos); } else if (wire === 1) { pos.i += 8; } else if (wire === 5) { pos.i += 4; }
    else if (wire === 2) { var n = readVarint(buf, pos); pos.i += n; } else { throw new Error("MVT: wire type " + wire); }
  }

  var utf8 = new TextDecoder();
  function readString(buf, start, end) { return utf8.decode(buf.subarray(start, end)); }

  // The parts of one MVT layer the map draws (spec 2.1): the feature geometries as command streams and the
  // value of one property per feature.
  function decodeLayer(buf, pos, end, property) {
    var layer = { name: "", extent: 4096, keys: [], values: [], features: [] };
    while (pos.i < end) {
      var tag = readVarint(buf, pos), field = Math.floor(tag / 8), wire = tag & 7, n, stop;
      if (field === 1 && wire === 2) { n = readVarint(buf, pos); layer.name = readString(buf, pos.i, pos.i + n); pos.i += n; }
      else if (field === 3 && wire === 2) { n = readVarint(buf, pos); layer.keys.push(readString(buf, pos.i, pos.i + n)); pos.i += n; }
      else if (field === 5 && wire === 0) { layer.extent = readVarint(buf, pos); }
      else if (field === 4 && wire === 2) {
        n = readVarint(buf, pos); stop = pos.i + n;
        var value = null;
        while (pos.i < stop) {  // Value: only a string is kept, as its place in the buffer, decoded if asked for
          var vtag = readVarint(buf, pos);
          if (vtag >>> 3 === 1 && (vtag & 7) === 2) { var m = readVarint(buf, pos); value = [pos.i, pos.i + m]; pos.i += m; }
          else { skipField(buf, pos, vtag & 7); }
        }
        layer.values.push(value);
      } else if (field === 2 && wire === 2) {
        n = readVarint(buf, pos); stop = pos.i + n;
        var feature = { tags: null, geometry: null, type: 0 };
        while (pos.i < stop) {
          var ftag = readVarint(buf, pos), ffield = ftag >>> 3, len, fend;
          if (ffield === 3 && (ftag & 7) === 0) { feature.type = readVarint(buf, pos); }
          else if ((ffield === 2 || ffield === 4) && (ftag & 7) === 2) {
            len = readVarint(buf, pos); fend = pos.i + len;
            var packed = [];
            while (pos.i < fend) { packed.push(readVarint(buf, pos)); }
            if (ffield === 2) { feature.tags = packed; } else { feature.geometry = packed; }
          } else { skipField(buf, pos, ftag & 7); }
        }
        layer.features.push(feature);
      } else { skipField(buf, pos, wire); }
    }
    var key = layer.keys.indexOf(property), decoded = {};
    layer.features.forEach(function (f) {
      f.value = null;
      for (var k = 0; f.tags && k < f.tags.length; k += 2) {
        var v = f.tags[k + 1];
        if (f.tags[k] === key && layer.values[v]) {
          if (!(v in decoded)) { decoded[v] = readString(buf, layer.values[v][0], layer.values[v][1]); }
          f.value = decoded[v];
        }
      }
    });
    return layer;
  }

  function decodeTile(buf, property) {
    var pos = { i: 0 }, layers = {};
    while (pos.i < buf.length) {
      var tag = readVarint(buf, pos);
      if (tag >>> 3 === 3 && (tag & 7) === 2) {
        var n = readVarint(buf, pos), layer = decodeLayer(buf, pos, pos.i + n, property);
        layers[layer.name] = layer;
      } else { skipField(buf, pos, tag & 7); }
    }
    return layers;
  }

  // Append a feature's MoveTo/LineTo/ClosePath commands (zig-zag deltas, spec 4.3) to the context's path.
  // A line of two points is a footprint's bounding box sent as its diagonal (zoom 13 and below): its box.
  function tracePath(path, geometry, scale, type) {
    var x = 0, y = 0, i = 0;
    if (type === 2 && geometry.length === 6 && geometry[0] === 9 && geometry[3] === 10) {
      x = (geometry[1] >>> 1) ^ -(geometry[1] & 1);
      y = (geometry[2] >>> 1) ^ -(geometry[2] & 1);
      var dx = (geometry[4] >>> 1) ^ -(geometry[4] & 1), dy = (geometry[5] >>> 1) ^ -(geometry[5] & 1);
      path.rect(x * scale, y * scale, dx * scale, dy * scale);
      return;
    }
    while (i < geometry.length) {
      var command = geometry[i] & 7, count = geometry[i] >>> 3;
      i += 1;
      if (command === 7) { path.closePath(); continue; }
      for (var c = 0; c < count; c += 1) {
        var dx = geometry[i], dy = geometry[i + 1];
        x += (dx >>> 1) ^ -(dx & 1);
        y += (dy >>> 1) ^ -(dy & 1);
        i += 2;
        if (command === 1) { path.moveTo(x * scale, y * scale); } else { path.lineTo(x * scale, y * scale); }
      }
    }
  }

  var PATH_BATCH = 64;

  function buildingsLayer() {
    var colours = {};
    config.buildingStatuses.forEach(function (s) { colours[s.code] = s.colour; });
    var features = {};  // "z/x/y" of the server's tile → footprints drawn from it
    var generation = 0;  // a reload bumps it: a tile still on its way from before is not counted
    var Layer = L.GridLayer.extend({
      createTile: function (coords, ready) {
        var size = this.getTileSize(), ratio = window.devicePixelRatio || 1;
        var canvas = document.createElement("canvas");
        canvas.width = size.x * ratio;
        canvas.height = size.y * ratio;
        var drawing = generation, z = coords.z - 1, key = z + "/" + coords.x + "/" + coords.y;
        var url = config.api.tiles + "/illegal_buildings/" + key + ".pbf" + query({ subdistrict: filters.subdistrict });
        state.requests += 1;
        fetch(url, { headers: headers("application/vnd.mapbox-vector-tile") }).then(function (response) {
          if (!response.ok) { throw new Error(url + " → HTTP " + response.status); }
          return response.arrayBuffer();
        }).then(function (body) {
          var layer = decodeTile(new Uint8Array(body), "status").illegal_buildings;
          var byColour = {};
          var drawn = layer ? layer.features : [];
          var scale = layer ? size.x * ratio / layer.extent : 1;
          drawn.forEach(function (f) {
            var colour = colours[f.value] || "#000";
            (byColour[colour] || (byColour[colour] = [])).push(f);
          });
          var ctx = canvas.getContext("2d");
          ctx.lineWidth = ratio;
          Object.keys(byColour).forEach(function (colour) {
            var shapes = byColour[colour];
            ctx.fillStyle = colour; ctx.strokeStyle = colour;
            // Chromium's cost of filling one path grows faster than its size: batches of PATH_BATCH footprints
            // measured ~100 times faster than one path for 40,000 of them, and ~1.5 times faster than one each.
            for (var start = 0; start < shapes.length; start += PATH_BATCH) {
              ctx.beginPath();
              shapes.slice(start, start + PATH_BATCH).forEach(function (f) { tracePath(ctx, f.geometry, scale, f.type); });
              ctx.globalAlpha = 0.7; ctx.fill();
              ctx.globalAlpha = 1; ctx.stroke();
            }
          });
          if (drawing === generation) { features[key] = drawn.length; }
          ready(null, canvas);
        }).catch(function (error) { fail("illegal_buildings")(error); ready(error, canvas); });
        return canvas;
      }
    });
    var layer = new Layer({ tileSize: 512, minZoom: 1, maxZoom: 20, className: "cg-buildings" });
    layer.on("tileunload", function (e) { delete features[(e.coords.z - 1) + "/" + e.coords.x + "/" + e.coords.y]; });
    // The tiles of the current zoom in view → their footprints. Leaflet keeps the previous zoom's tiles a
    // moment after "load" (until it prunes them); they are not counted.
    layer.tileFeatures = function () {
      var shown = {};
      Object.keys(layer._tiles).forEach(function (id) {
        var tile = layer._tiles[id], key = (tile.coords.z - 1) + "/" + tile.coords.x + "/" + tile.coords.y;
        if (tile.current && key in features) { shown[key] = features[key]; }
      });
      return shown;
    };
    layer.on("load", function () {
      var n = 0, shown = layer.tileFeatures();
      Object.keys(shown).forEach(function (key) { n += shown[key]; });
      done("illegal_buildings", n);
    });
    layer.reload = function () { generation += 1; features = {}; layer.redraw(); };
    return layer;
  }

  // ---- incidents: heat map and hotspots -------------------------------------------------------------

  // The heat map and the hotspots count the same incidents: when the map opens or a filter changes they come
  // in one answer (/v1/map/incidents), which reads the incidents once; moving the map asks for heat alone.
  function heatLayer() {
    var layer = L.heatLayer([], { radius: 18, blur: 15, maxZoom: 17, minOpacity: 0.25 });
    layer.show = function (body) {
      var max = 1;
      body.cells.forEach(function (c) { if (c[2] > max) { max = c[2]; } });
      layer.setOptions({ max: max });
      layer.setLatLngs(body.cells);
      state.heatTotal = body.total;
      done("heat", body.cells.length);
    };
    layer.reload = function () {
      var params = incidentFilters();
      params.bbox = bboxParam();
      params.zoom = map.getZoom();
      get(config.api.heat + query(params)).then(layer.show).catch(fail("heat"));
    };
    return layer;
  }

  function hotspotsLayer() {
    var layer = L.geoJSON(null, {
      filter: function (f) { return f.properties.gi_bin !== 0; },
      style: function (f) {
        return { color: "#555", weight: 0.5, fillColor: BINS[String(f.properties.gi_bin)], fillOpacity: 0.55 };
      },
      onEachFeature: function (f, l) {
        l.bindTooltip(function () {
          var p = f.properties;
          return (p.gi_bin > 0 ? t("hot") : t("cold")) + " " + p.confidence + "% " + t("confidence") +
            "<br>z = " + p.z.toFixed(2) + ", p = " + p.p_value.toPrecision(2) + ", n = " + p.count;
        });
      }
    });
    layer.show = function (fc) {
      layer.clearLayers();
      layer.addData(fc);
      done("hotspots", layer.getLayers().length);
    };
    return layer;
  }

  function loadIncidents() {
    var params = incidentFilters();
    params.bbox = bboxParam();
    params.zoom = map.getZoom();
    params.cell = "h3:9";
    get(config.api.incidents + query(params)).then(function (body) {
      overlays.heat.show(body.heat);
      overlays.hotspots.show(body.hotspots);
    }).catch(function (error) { fail("heat")(error); fail("hotspots")(error); });
  }

  // ---- grid choropleth of a score from /v1/kpi --------------------------------------------------------

  function choroplethLayer() {
    var scores = {};
    var layer = L.geoJSON(null, {
      style: function (f) {
        var v = scores[f.properties.code];  // a percentage; for the rework rate, lower is better
        var good = v == null ? 0 : Math.max(0, Math.min(1, v / 100));
        if (filters.score === "rework_rate") { good = 1 - good; }
        var shade = v == null ? "#eeeeee" : "hsl(" + Math.round(120 * good) + ",70%,50%)";
        return { color: "#666", weight: 0.5, fillColor: shade, fillOpacity: 0.6 };
      },
      onEachFeature: function (f, l) {
        l.bindTooltip(function () {
          var v = scores[f.properties.code];
          return esc(f.properties.name) + "<br>" + t(filters.score) + "：" +
            (v == null ? t("noScores") : v.toFixed(1) + "%");
        });
      }
    });
    var grids = null;
    function load() {
      var params = { period: filters.period, by: "grid" };
      callerReady.then(function () {
        if (state.caller && state.caller.reads_scores) { return true; }
        // not for this caller: say whose key the scores need instead of asking the API for a refusal
        state.notices.push(t("needsScores"));
        L.popup().setLatLng(map.getCenter()).setContent(esc(t("needsScores"))).openOn(map);
        done("choropleth", 0);
        return false;
      }).then(function (allowed) {
        if (!allowed) { return; }
        Promise.all([grids || get(config.api.layers + "/grids?limit=10000"), get(config.api.kpi + query(params))])
        .then(function (r) {
          grids = r[0];
          scores = {};
          (r[1].rows || []).forEach(function (row) { scores[row.code] = row[filters.score]; });
          layer.clearLayers();
          layer.addData(grids);
          done("choropleth", Object.keys(scores).length);
        }).catch(fail("choropleth"));
      });
    }
    layer.reload = load;
    layer.on("add", load);
    return layer;
  }

  // ---- click: the owner chain --------------------------------------------------------------------

  function person(p) { return p ? esc(p.name) + " " + esc(p.phone || "") : "—"; }

  function ownerPopup(event) {
    var ll = event.latlng;
    var popup = L.popup({ maxWidth: 340 }).setLatLng(ll).setContent(t("loading")).openOn(map);
    fetch(config.api.owner + query({ lon: ll.lng.toFixed(7), lat: ll.lat.toFixed(7) }), { headers: headers() }).then(function (response) {
      return response.json().then(function (body) { return { ok: response.ok, body: body }; });
    }).then(function (r) {
      var a = r.body;
      if (!r.ok) {
        popup.setContent("<div class='cg-owner'>" + t("notCovered") + "<br>" + esc(a.message) + "</div>");
        return;
      }
      var chief = a.street_chief;
      var rows = [
        [t("grid"), a.grid.code + " " + a.grid.name],
        [t("community"), a.community.name],
        [t("subdistrict"), lang === "zh" ? a.subdistrict.name : a.subdistrict.name_en],
        [t("squad"), a.squad.name + "（" + a.squad.headcount + t("headcount") + "）" + person(a.squad.leader)],
        [t("gridMember"), person(a.grid_member)],
        [t("streetChief"), person(chief.person) + (chief.basis === "street" ? "（" + chief.street.name + "）" : t("noStreetChief"))],
        [t("subdistrictChief"), person(a.subdistrict_chief)],
        [t("generalChief"), person(a.general_street_chief)]
      ];
      if (a.river_chief) { rows.push([t("riverChief"), person(a.river_chief.person) + "（" + a.river_chief.river.name + "）"]); }
      var flags = [];
      if (a.ambiguous) { flags.push(t("ambiguous") + "：" + a.candidates.join("、")); }
      if (a.outside) { flags.push(t("outside") + " " + a.distance_to_grid_m + t("metres")); }
      popup.setContent("<div class='cg-owner' data-grid='" + esc(a.grid.code) + "'><b>" + t("owner") + "</b><table>" +
        rows.map(function (row) { return "<tr><th>" + row[0] + "</th><td>" + esc(row[1]) + "</td></tr>"; }).join("") +
        "</table>" + (flags.length ? "<div class='cg-flags'>" + esc(flags.join("；")) + "</div>" : "") + "</div>");
    }).catch(function (error) { popup.setContent(esc(error.message)); });
  }

  // ---- controls: layers, legend, filters, language -------------------------------------------------

  function buildLayerControl() {
    if (control) { map.removeControl(control); }
    var named = {};
    LAYER_ORDER.forEach(function (name) { named[t(name)] = overlays[name]; });
    control = L.control.layers(null, named, { collapsed: false, position: "topright" }).addTo(map);
  }

  function buildLegend() {
    if (legend) { map.removeControl(legend); }
    legend = L.control({ position: "bottomright" });
    legend.onAdd = function () {
      var div = L.DomUtil.create("div", "cg-legend");
      var html = "<b>" + t("legend") + "</b><div class='cg-legend-title'>" + t("illegal_buildings") + "</div>";
      config.buildingStatuses.forEach(function (s) {
        html += "<div><i style='background:" + s.colour + "'></i>" + esc(label(s)) + "</div>";
      });
      html += "<div class='cg-legend-title'>" + t("hotspots") + "</div>";
      [3, 2, 1, -1, -2, -3].forEach(function (bin) {
        var level = { 3: 99, 2: 95, 1: 90 }[Math.abs(bin)];
        html += "<div><i style='background:" + BINS[String(bin)] + "'></i>" + (bin > 0 ? t("hot") : t("cold")) +
          " " + level + "%</div>";
      });
      html += "<div class='cg-legend-title'>" + t("heat") + "</div><div class='cg-heat-ramp'></div>";
      div.innerHTML = html;
      return div;
    };
    legend.addTo(map);
  }

  function option(value, text, selected) {
    return "<option value='" + esc(value) + "'" + (selected ? " selected" : "") + ">" + esc(text) + "</option>";
  }

  function buildPanel() {
    if (panel) { map.removeControl(panel); }
    panel = L.control({ position: "topleft" });
    panel.onAdd = function () {
      var div = L.DomUtil.create("div", "cg-panel");
      L.DomEvent.disableClickPropagation(div);
      L.DomEvent.disableScrollPropagation(div);
      var items = config.items.filter(function (i) { return !filters.category || i.category === filters.category; });
      div.innerHTML =
        "<div class='cg-head'><b>" + t("title") + "</b><button type='button' id='cg-lang'>" + t("lang") + "</button></div>" +
        "<label>" + t("from") + " <input type='date' id='cg-from' value='" + esc(filters.from) + "'></label>" +
        "<label>" + t("to") + " <input type='date' id='cg-to' value='" + esc(filters.to) + "'></label>" +
        "<label>" + t("category") + " <select id='cg-category'>" + option("", t("all"), !filters.category) +
        config.categories.map(function (c) { return option(c.code, c.code + " " + label(c), filters.category === c.code); }).join("") +
        "</select></label>" +
        "<label>" + t("item") + " <select id='cg-item'>" + option("", t("all"), !filters.item) +
        items.map(function (i) { return option(i.code, i.code + " " + label(i), filters.item === i.code); }).join("") +
        "</select></label>" +
        "<label>" + t("subdistrict") + " <select id='cg-subdistrict'>" + option("", t("all"), !filters.subdistrict) +
        config.subdistricts.map(function (s) { return option(s.code, label(s), filters.subdistrict === s.code); }).join("") +
        "</select></label>" +
        "<label>" + t("status") + " <select id='cg-status'>" + option("", t("all"), !filters.status) +
        config.statuses.map(function (s) { return option(s.code, label(s), filters.status === s.code); }).join("") +
        "</select></label>" +
        "<label>" + t("score") + " <select id='cg-score'>" +
        ["closure_rate", "on_time_rate", "rework_rate", "satisfaction_rate"].map(function (s) {
          return option(s, t(s), filters.score === s);
        }).join("") + "</select></label>" +
        "<label>" + t("period") + " <input type='text' id='cg-period' size='7' value='" + esc(filters.period) + "'></label>" +
        "<div class='cg-key'>" + (apiKey
          ? "<span id='cg-caller'>" + esc(callerText()) + "</span> <button type='button' id='cg-signout'>" + t("signOut") + "</button>"
          : "<label>" + t("key") + " <input type='password' id='cg-key' size='12' placeholder='cg_…' autocomplete='off'></label>" +
            " <button type='button' id='cg-signin'>" + t("signIn") + "</button> <span id='cg-caller'>" + esc(t("anonymous")) + "</span>") +
        "</div>";
      return div;
    };
    panel.addTo(map);
    var bind = function (id, key) {
      document.getElementById(id).addEventListener("change", function (e) {
        filters[key] = e.target.value || null;
        if (key === "category") { filters.item = null; buildPanel(); }
        refresh(key);
      });
    };
    bind("cg-from", "from"); bind("cg-to", "to"); bind("cg-category", "category"); bind("cg-item", "item");
    bind("cg-subdistrict", "subdistrict"); bind("cg-status", "status"); bind("cg-score", "score");
    bind("cg-period", "period");
    document.getElementById("cg-lang").addEventListener("click", function () {
      setLanguage(lang === "zh" ? "en" : "zh");
    });
    if (apiKey) {
      document.getElementById("cg-signout").addEventListener("click", function () { setKey(""); });
    } else {
      var input = document.getElementById("cg-key");
      var signIn = function () { if (input.value.trim()) { setKey(input.value.trim()); } };
      document.getElementById("cg-signin").addEventListener("click", signIn);
      input.addEventListener("keydown", function (e) { if (e.key === "Enter") { signIn(); } });
    }
  }

  function callerText() {
    var c = state.caller;
    if (!c) { return t("loading"); }
    if (c.refused) { return t("keyRefused"); }
    return (T[lang].roles[c.role] || c.role) + "：" + c.name + (c.subdistrict_code ? "（" + c.subdistrict_code + "）" : "");
  }

  function whoAmI() {
    callerReady = get(config.api.whoami).then(function (caller) {
      state.caller = caller;
    }).catch(function () {
      state.caller = { refused: true };
    }).then(function () {
      var shown = document.getElementById("cg-caller");
      if (shown && apiKey) { shown.textContent = callerText(); }
    });
  }

  function refresh(changed) {
    if (changed === "score" || changed === "period") {
      if (map.hasLayer(overlays.choropleth)) { overlays.choropleth.reload(); }
      return;
    }
    loadIncidents();
    if (changed === "subdistrict") { overlays.illegal_buildings.reload(); }
  }

  function setLanguage(next) {
    lang = next;
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    document.title = t("title");
    buildLayerControl();
    buildLegend();
    buildPanel();
  }

  function init(leafletMap, cfg) {
    map = leafletMap;
    map.setMaxZoom(20);  // the stall clusters need it, and with no base map nothing else sets it
    config = cfg;
    lang = cfg.lang === "en" ? "en" : "zh";
    filters = { from: cfg.period.from, to: cfg.period.to, category: null, item: null, subdistrict: null,
      status: null, score: "closure_rate", period: "2017Q2" };
    // The incident layers take the server longest: asked first, before the browser's six connections fill up.
    loadIncidents();
    whoAmI();
    overlays.subdistricts = boundary("subdistricts", { color: "#4a148c", weight: 3, fill: false },
      function (p) { return esc(p.code + " " + (lang === "zh" ? p.name : p.name_en)); });
    overlays.communities = boundary("communities", { color: "#6a1b9a", weight: 2, dashArray: "4 4", fill: false },
      function (p) { return esc(p.code + " " + p.name); });
    overlays.grids = boundary("grids", { color: "#7b1fa2", weight: 0.8, fillOpacity: 0.02 },
      function (p) { return esc(p.code + " " + p.name); });
    overlays.streets = streetsLayer();
    overlays.rivers = boundary("rivers", { color: "#1e88e5", weight: 6, opacity: 0.7 },
      function (p) { return esc(p.name); });
    overlays.markets = boundary("markets", { color: "#00695c", weight: 2, fillColor: "#26a69a", fillOpacity: 0.4 },
      function (p) { return esc(p.name); });
    overlays.stalls = stallsLayer();
    overlays.illegal_buildings = buildingsLayer();
    overlays.heat = heatLayer();
    overlays.hotspots = hotspotsLayer();
    overlays.choropleth = choroplethLayer();
    DEFAULT_ON.forEach(function (name) { overlays[name].addTo(map); });
    setLanguage(lang);
    map.on("click", ownerPopup);
    map.on("moveend", function () { overlays.heat.reload(); overlays.stalls.reload(); });
    window.citygrid = { map: map, overlays: overlays, state: state, filters: filters, setLanguage: setLanguage,
      setFilter: function (key, value) { filters[key] = value; buildPanel(); refresh(key); }, setKey: setKey };
  }

  window.CityGrid = { init: init };
})();
