"""The Wenshan fixture generator: synthetic geography, real structure, the seed article's figures.

Deterministic (one fixed seed): running it again writes the same files byte for byte. Everything is
built in EPSG:4544 metres around Wenshan's real urban centre and written as RFC 7946 GeoJSON (EPSG:4326,
7 decimals). Grids are cells of a jittered lattice whose shared corners are computed once, so grids tile
their community and communities tile their subdistrict exactly. fixtures/geojson/README.md says what is
real and what is synthetic, and where the planted hotspots are.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import Transformer
from shapely import affinity
from shapely.geometry import LineString, MultiLineString, Point, Polygon, box, mapping
from shapely.geometry.base import BaseGeometry
from shapely.strtree import STRtree

from spatial.catalogue import ITEMS, Item
from spatial.workflow import add_working_time

SEED = 20170630  # the seed article's publication date
CENTRE_LONLAT = (104.244, 23.371)
COUNTY_CODE = "532601"
CST = timezone(timedelta(hours=8), "CST")
DECIMALS = 7

CELL_M = 430.0
COLUMNS, ROWS = 22, 18
JITTER = 0.2  # of a cell, per axis; below 0.25 every cell stays a simple quadrilateral

# (code, name, English name, grids, communities, squad headcount, assistants, community names)
SUBDISTRICTS = (
    (
        "532601001",
        "开化街道",
        "Kaihua",
        80,
        10,
        119,
        71,
        ("东风", "南桥", "北门", "西华", "凤凰", "学府", "三七", "文笔", "龙泉", "秀峰"),
    ),
    (
        "532601002",
        "卧龙街道",
        "Wolong",
        70,
        9,
        103,
        61,
        ("卧龙", "桃源", "石榴", "兴华", "振兴", "华龙", "塘子", "龙树", "翠湖"),
    ),
    (
        "532601003",
        "新平街道",
        "Xinping",
        43,
        7,
        63,
        38,
        ("新平", "普阳", "城南", "明湖", "鑫源", "锦屏", "花园"),
    ),
)

HOTLINE_REPORTS, HOTLINE_CLOSED, HOTLINE_SATISFIED = 3694, 2900, 2494  # 78.5 %, 86.0 %
LETTERS, LETTERS_CLOSED = 1052, 861
ILLEGAL_BUILDINGS, DEMOLISHED, DEMOLISHED_M2 = 823, 448, 400_000.0
MARKETS = (("农产品交易市场", 9), ("汽车交易市场", 3), ("维修加工场所", 4), ("五金建材市场", 5))
STALLS = 1620
OPERATIONS = 64
STREET_CHIEFS = 17
CADRES_PER_COMMUNITY = 4
ROTATION_DAY = datetime(2017, 4, 1, tzinfo=CST)  # 交流轮岗: six pairs of grid members swap grids
GENERATION_FROM = datetime(2016, 1, 1, tzinfo=CST)
LETTERS_SIGNED = datetime(2017, 1, 10, tzinfo=CST)  # 街长责任书
HALF_YEAR = (datetime(2017, 1, 1, tzinfo=CST), datetime(2017, 6, 30, tzinfo=CST))
CAMPAIGN = "五治三改一拆一增"

# Planted hotspots: (key, item code, count, radius m, offset from the centre in cells (east, north), label)
HOTSPOTS = (
    ("market", "0508", 160, 150.0, None, "最大农产品交易市场周边占道经营"),
    ("barbecue", "0111", 130, 150.0, (3.4, 2.6), "夜市一条街露天烧烤"),
    ("river", "0701", 120, 150.0, None, "盘龙河沿岸向河道倾倒垃圾"),
    ("site", "0302", 120, 150.0, (-4.2, -2.8), "建设工地扬尘"),
)

SURNAMES = (
    "王李张刘陈杨黄赵周吴徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹彭曾肖田董潘袁蔡蒋余"
    "于杜叶程魏苏吕丁任卢姚沈钟姜崔谭陆范汪廖石金韦贾夏付方邹熊白孟秦邱侯江尹薛段雷龙"
    "黎史陶贺毛郝顾龚邵万武钱严孔向常汤康易乔赖文施洪"
)
GIVEN = (
    "建华 丽华 志强 海燕 国庆 秀英 文军 春梅 永刚 红梅 正德 桂芳 家宝 "
    "玉兰 明辉 晓东 雪梅 光荣 金凤 立新 卫东 美玲 德明 俊杰 建国 丽萍 "
    "晓燕 永红 志勇 秀兰 天华 艳芳 云龙 小平 绍林 琼 敏 静 磊 勇 涛 "
    "军 芳 艳 霞 斌 杰 鹏 娟 洁 强 刚 平 林 萍 健 波 宇 婷 燕 超 "
    "浩 亮 华 红 雪 梅 明 丹 凯 成 伟 "
).split()
STREET_ROOTS = (
    "凤凰 七花 开化 东风 文笔 学府 龙泉 三七 普阳 盘龙 卧龙 新平 建设 "
    "人民 环城 振兴 桃源 秀峰 石榴 兴华 华龙 塘子 明湖 锦屏 花园 南桥 "
    "北门 西华 东华 城南 鑫源 和谐 民族 团结 文化 体育 光明 幸福 育才 "
    "健康 滨河 金源 银杏 丹桂 香樟 紫荆 玉兰 春晖 朝阳 永安 长青 广福 "
    "太平 同心 致远 青云 秀水 清泉 天平 文苑 "
).split()
STALL_KINDS = ("水果摊", "小吃摊", "烧烤摊", "早点摊", "蔬菜摊", "日杂摊", "三七摊", "修鞋摊", "报刊亭")
OPERATION_THEMES = (
    "违法建设拆除",
    "占道经营整治",
    "户外广告整治",
    "市场秩序整顿",
    "环境卫生整治",
    "河道综合整治",
)


@dataclass
class Cell:
    """A lattice cell of the city: one grid."""

    col: int
    row: int
    polygon: Polygon  # EPSG:4544
    subdistrict: int = -1
    community_code: str = ""
    code: str = ""


@dataclass
class City:
    """Everything the generator builds, in EPSG:4544 until it is written."""

    cells: list[Cell]
    communities: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # code -> name, sub, index
    river: LineString | None = None
    streets: list[dict[str, Any]] = field(default_factory=list)
    features: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


class Generator:
    """Builds the Wenshan fixture; ``layers()`` returns every layer's features."""

    def __init__(self, seed: int = SEED) -> None:
        self.rng = np.random.default_rng(seed)
        self.rework_rng = np.random.default_rng(seed + 4)  # 返工 draws: a stream of their own, other figures stay
        self.to_m = Transformer.from_crs(4326, 4544, always_xy=True)
        self.to_deg = Transformer.from_crs(4544, 4326, always_xy=True)
        self.origin = self.to_m.transform(*CENTRE_LONLAT)
        self.used_names: set[str] = set()
        self.market_shapes: list[Polygon] = []
        self.hotspot_centres: dict[str, tuple[float, float]] = {}  # key -> (lon, lat), filled by layers()

    # -- geometry helpers ---------------------------------------------------------------------------

    def lonlat(self, geom: BaseGeometry) -> dict[str, Any]:
        """Return ``geom`` (EPSG:4544) as a GeoJSON geometry in EPSG:4326 rounded to 7 decimals."""
        projected = shapely.transform(geom, lambda xy: np.column_stack(self.to_deg.transform(xy[:, 0], xy[:, 1])))
        rounded = shapely.set_precision(projected, 10**-DECIMALS, mode="pointwise")
        return _rounded(mapping(_orient(rounded)))

    def at(self, east_cells: float, north_cells: float) -> Point:
        """Return the point so many cells east and north of the centre."""
        return Point(self.origin[0] + east_cells * CELL_M, self.origin[1] + north_cells * CELL_M)

    # -- boundaries -----------------------------------------------------------------------------------

    def lattice(self) -> list[Cell]:
        """Return the 193 city cells: the jittered lattice cells nearest the centre (an E-W ellipse)."""
        x0 = self.origin[0] - COLUMNS / 2 * CELL_M
        y0 = self.origin[1] + ROWS / 2 * CELL_M
        jitter = self.rng.uniform(-JITTER, JITTER, size=(COLUMNS + 1, ROWS + 1, 2)) * CELL_M
        corners = np.empty((COLUMNS + 1, ROWS + 1, 2))
        for i in range(COLUMNS + 1):
            for j in range(ROWS + 1):
                corners[i, j] = (x0 + i * CELL_M, y0 - j * CELL_M)
                if 0 < i < COLUMNS and 0 < j < ROWS:
                    corners[i, j] += jitter[i, j]
        self.corners = corners
        ranked = []
        for i in range(COLUMNS):
            for j in range(ROWS):
                dx = (i + 0.5 - COLUMNS / 2) / 1.3
                dy = j + 0.5 - ROWS / 2
                ranked.append((math.hypot(dx, dy), j, i))
        total = sum(s[3] for s in SUBDISTRICTS)
        chosen = sorted(ranked)[:total]
        cells = []
        for _, j, i in sorted(chosen, key=lambda r: (r[1], r[2])):
            ring = [corners[i, j], corners[i + 1, j], corners[i + 1, j + 1], corners[i, j + 1]]
            cells.append(Cell(col=i, row=j, polygon=Polygon([tuple(p) for p in ring])))
        return cells

    def assign_boundaries(self, cells: list[Cell]) -> dict[str, tuple[str, str, int]]:
        """Split the cells into subdistricts (sectors round the centre) and communities; give codes."""
        cx, cy = self.origin

        def angle(cell: Cell) -> float:
            c = cell.polygon.centroid
            return (math.atan2(c.y - cy, c.x - cx) - math.radians(100)) % (2 * math.pi)

        ordered = sorted(cells, key=lambda c: (angle(c), c.row, c.col))
        communities: dict[str, tuple[str, str, int]] = {}
        start = 0
        for index, (sub_code, _, _, n_grids, n_communities, *_rest) in enumerate(SUBDISTRICTS):
            members = ordered[start : start + n_grids]
            start += n_grids
            for cell in members:
                cell.subdistrict = index
            groups = _bisect(members, n_communities)
            groups.sort(key=lambda g: (-round(_centre(g).y / (CELL_M * 3)), _centre(g).x))
            names = SUBDISTRICTS[index][7]
            for serial, group in enumerate(groups, start=1):
                community_code = f"{sub_code}{serial:03d}"
                communities[community_code] = (f"{names[serial - 1]}社区", sub_code, index)
                for grid_serial, cell in enumerate(sorted(group, key=lambda c: (c.row, c.col)), start=1):
                    cell.community_code = community_code
                    cell.code = f"{community_code}{grid_serial:03d}"
        return communities

    # -- lines ----------------------------------------------------------------------------------------

    def river(self) -> LineString:
        """Return the Panlong river: in from the north-west, curving round the city to the south-east."""
        controls = [
            (-14, 7.5),
            (-9, 5.5),
            (-5, 2.2),
            (-1.5, 0.6),
            (1.5, 1.0),
            (4.5, -1.2),
            (7, -4.5),
            (12, -8),
        ]
        points = [self.at(e, n) for e, n in controls]
        return LineString(_catmull_rom([(p.x, p.y) for p in points], 12))

    def streets(self, cells: list[Cell]) -> list[dict[str, Any]]:
        """Return named streets along the lattice lines that bound city cells, long ones in two sections."""
        in_city = {(c.col, c.row) for c in cells}
        roots = list(STREET_ROOTS)
        order = self.rng.permutation(len(roots))
        names = iter(roots[k] for k in order)
        streets: list[dict[str, Any]] = []
        lines: list[tuple[str, int, list[tuple[float, float]]]] = []
        for j in range(ROWS + 1):  # east-west lines
            run: list[tuple[float, float]] = []
            for i in range(COLUMNS + 1):
                touches = (
                    (i, j - 1) in in_city or (i, j) in in_city or (i - 1, j - 1) in in_city or (i - 1, j) in in_city
                )
                if touches:
                    run.append(tuple(self.corners[i, j]))
            if len(run) >= 2:
                lines.append(("ew", j, run))
        for i in range(COLUMNS + 1):  # north-south lines
            run = []
            for j in range(ROWS + 1):
                touches = (
                    (i - 1, j) in in_city or (i, j) in in_city or (i - 1, j - 1) in in_city or (i, j - 1) in in_city
                )
                if touches:
                    run.append(tuple(self.corners[i, j]))
            if len(run) >= 2:
                lines.append(("ns", i, run))
        for direction, index, run in lines:
            root = next(names)
            kind = "trunk" if index % 4 == 2 else ("secondary" if index % 2 == 0 else "branch")
            suffix = "路" if direction == "ew" else "街"
            if kind == "trunk":
                suffix = "大道"
            sections = [run]
            labels = [""]
            if len(run) > 10:
                half = len(run) // 2
                sections = [run[: half + 1], run[half:]]
                labels = ["西段", "东段"] if direction == "ew" else ["北段", "南段"]
            for section, label in zip(sections, labels, strict=True):
                streets.append({"name": f"{root}{suffix}{label}", "kind": kind, "line": LineString(section)})
        streets.sort(key=lambda s: (-s["line"].length, s["name"]))
        for serial, street in enumerate(streets, start=1):
            street["code"] = f"ST{serial:03d}"
        return streets

    # -- people ---------------------------------------------------------------------------------------

    def person_name(self) -> str:
        """Return a Chinese name not used before in the fixture."""
        while True:
            name = SURNAMES[self.rng.integers(len(SURNAMES))] + GIVEN[self.rng.integers(len(GIVEN))]
            if self.rng.random() < 0.25:
                name += GIVEN[self.rng.integers(len(GIVEN))][0]
            if name not in self.used_names:
                self.used_names.add(name)
                return name

    # -- build everything -------------------------------------------------------------------------------

    def layers(self) -> dict[str, list[dict[str, Any]]]:
        """Return every layer's GeoJSON features, keyed by layer name."""
        cells = self.lattice()
        communities = self.assign_boundaries(cells)
        river = self.river()
        streets = self.streets(cells)
        out: dict[str, list[dict[str, Any]]] = {}
        out["boundary_generations"] = [
            _feature(
                None,
                {
                    "generation": 1,
                    "label": "2016年城区网格划分",
                    "valid_from": _iso(GENERATION_FROM),
                    "valid_to": None,
                    "source": "citygrid synthetic fixture",
                },
            )
        ]
        out["grids"] = [
            _feature(
                self.lonlat(c.polygon),
                {
                    "generation": 1,
                    "code": c.code,
                    "community_code": c.community_code,
                    "name": f"{communities[c.community_code][0]}第{int(c.code[-3:])}网格",
                },
            )
            for c in sorted(cells, key=lambda c: c.code)
        ]
        # Communities and subdistricts are unions of the cells' 4326 geometries, so they share their vertices.
        grid_shapes = {f["properties"]["code"]: shapely.geometry.shape(f["geometry"]) for f in out["grids"]}
        out["communities"] = []
        for code, (name, sub_code, _) in sorted(communities.items()):
            union = shapely.union_all([g for k, g in grid_shapes.items() if k.startswith(code)])
            out["communities"].append(
                _feature(
                    _geojson_multi(union),
                    {"generation": 1, "code": code, "subdistrict_code": sub_code, "name": name},
                )
            )
        out["subdistricts"] = []
        for sub_code, name, name_en, *_ in SUBDISTRICTS:
            union = shapely.union_all([g for k, g in grid_shapes.items() if k.startswith(sub_code)])
            out["subdistricts"].append(
                _feature(
                    _geojson_multi(union),
                    {"generation": 1, "code": sub_code, "name": name, "name_en": name_en},
                )
            )
        out["rivers"] = [_feature(self.lonlat(MultiLineString([river])), {"code": "RV01", "name": "盘龙河"})]
        out["streets"] = [
            _feature(self.lonlat(s["line"]), {"code": s["code"], "name": s["name"], "kind": s["kind"]}) for s in streets
        ]
        people, duties, squads = self.people_and_duties(cells, communities, streets)
        out["squads"], out["people"], out["duties"] = squads, people, duties
        tree = _Placer(cells, streets)
        markets = self.markets(tree)
        out["markets"] = markets
        out["stalls"] = self.stalls(tree, streets)
        out["illegal_buildings"] = self.illegal_buildings(tree, communities, streets)
        out["operations"] = self.operations(tree)
        out["incidents"] = self.incidents(tree, river, streets)
        return out

    def people_and_duties(
        self, cells: list[Cell], communities: dict[str, tuple[str, str, int]], streets: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        """Return people, their duty periods, and the squads, with the seed's headcounts."""
        people: list[dict[str, Any]] = []
        duties: list[dict[str, Any]] = []
        squads: list[dict[str, Any]] = []

        def person(role: str, title: str, squad: str | None = None) -> str:
            pid = f"P{len(people) + 1:04d}"
            people.append(
                _feature(
                    None,
                    {
                        "id": pid,
                        "name": self.person_name(),
                        "role": role,
                        "phone": f"0876-0{len(people) + 1:06d}",
                        "squad_code": squad,
                        "title": title,
                    },
                )
            )
            return pid

        def duty(pid: str, role: str, kind: str, target: str, start: datetime, end: datetime | None = None) -> None:
            duties.append(
                _feature(
                    None,
                    {
                        "person_id": pid,
                        "role": role,
                        "target_kind": kind,
                        "target_code": target,
                        "valid_from": _iso(start),
                        "valid_to": _iso(end) if end else None,
                    },
                )
            )

        duty(
            person("general_street_chief", "常务副市长、总街长"),
            "general_street_chief",
            "city",
            COUNTY_CODE,
            GENERATION_FROM,
        )
        duty(person("river_chief", "市长、总河长"), "river_chief", "river", "RV01", GENERATION_FROM)
        for sub_code, name, name_en, _, _, headcount, assistants, _ in SUBDISTRICTS:
            squad_code = f"{sub_code}-ZD"
            squads.append(
                _feature(
                    None,
                    {
                        "code": squad_code,
                        "subdistrict_code": sub_code,
                        "name": f"{name}城管执法中队",
                        "name_en": f"{name_en} enforcement squad",
                        "headcount": headcount,
                        "assistants": assistants,
                    },
                )
            )
            duty(
                person("subdistrict_chief", f"{name}办事处主任、街长、河长"),
                "subdistrict_chief",
                "subdistrict",
                sub_code,
                GENERATION_FROM,
            )
            duty(
                person("squad_leader", f"{name}副主任、执法中队长", squad_code),
                "squad_leader",
                "squad",
                squad_code,
                GENERATION_FROM,
            )
            for _ in range(headcount - assistants - 1):
                person("squad_officer", "执法队员", squad_code)
            for _ in range(assistants):
                person("squad_assistant", "城管协管员", squad_code)
        for code in sorted(communities):
            for _ in range(CADRES_PER_COMMUNITY):
                duty(
                    person("community_cadre", f"{communities[code][0]}干部"),
                    "community_cadre",
                    "community",
                    code,
                    GENERATION_FROM,
                )
        members = {}
        for cell in sorted(cells, key=lambda c: c.code):
            members[cell.code] = person("grid_member", "网格员")
        # 交流轮岗: in six communities the first two grid members swap grids on the rotation day.
        swapped: set[str] = set()
        for code in sorted(communities)[::4][:6]:
            first, second = f"{code}001", f"{code}002"
            swapped.update((first, second))
            for grid, before, after in (
                (first, members[first], members[second]),
                (second, members[second], members[first]),
            ):
                duty(before, "grid_member", "grid", grid, GENERATION_FROM, ROTATION_DAY)
                duty(after, "grid_member", "grid", grid, ROTATION_DAY)
        for grid, pid in members.items():
            if grid not in swapped:
                duty(pid, "grid_member", "grid", grid, GENERATION_FROM)
        for street in sorted(streets, key=lambda s: (s["kind"] != "trunk", -s["line"].length, s["code"]))[
            :STREET_CHIEFS
        ]:
            duty(
                person("street_chief", f"{street['name']}街长"),
                "street_chief",
                "street",
                street["code"],
                LETTERS_SIGNED,
            )
        return people, duties, squads

    def markets(self, placer: _Placer) -> list[dict[str, Any]]:
        """Return the 21 rectified markets as footprints inside grids."""
        features = []
        serial = 0
        for kind, count in MARKETS:
            for _ in range(count):
                serial += 1
                width, depth = self.rng.uniform(70, 140), self.rng.uniform(50, 110)
                shape = placer.place(self.rng, width, depth, margin=25.0)
                self.market_shapes.append(shape)
                rectified = date(2017, 1, 5) + timedelta(days=int(self.rng.integers(0, 170)))
                features.append(
                    _feature(
                        self.lonlat(shape),
                        {
                            "code": f"SC{serial:02d}",
                            "name": f"{placer.area_name(shape)}{kind}",
                            "kind": kind,
                            "rectified_at": rectified.isoformat(),
                        },
                    )
                )
        return features

    def stalls(self, placer: _Placer, streets: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Return street stalls: most round the markets, the rest along the trunk and secondary streets."""
        features = []
        busy = [s["line"] for s in streets if s["kind"] != "branch"]
        for serial in range(1, STALLS + 1):
            market_code = None
            if serial <= STALLS * 0.6:
                index = int(self.rng.integers(len(self.market_shapes)))
                shape = self.market_shapes[index]
                inside = self.rng.random() < 0.4
                point = placer.scatter(
                    self.rng, shape.centroid, 45.0 if inside else 130.0, within=shape if inside else None
                )
                if inside:
                    market_code = f"SC{index + 1:02d}"
            else:
                line = busy[int(self.rng.integers(len(busy)))]
                point = placer.along(self.rng, line)
            kind = STALL_KINDS[int(self.rng.integers(len(STALL_KINDS)))]
            licensed = bool(market_code) or self.rng.random() < 0.25
            features.append(
                _feature(
                    self.lonlat(point),
                    {
                        "code": f"TD{serial:05d}",
                        "kind": kind,
                        "licensed": licensed,
                        "market_code": market_code,
                    },
                )
            )
        return features

    def illegal_buildings(
        self, placer: _Placer, communities: dict[str, tuple[str, str, int]], streets: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Return the 823 investigated footprints; the 448 demolished add up to 400,000 m² in EPSG:4544."""
        sizes = self.rng.lognormal(mean=math.log(620), sigma=0.55, size=ILLEGAL_BUILDINGS)
        demolished = set(self.rng.choice(ILLEGAL_BUILDINGS, size=DEMOLISHED, replace=False).tolist())
        scale = DEMOLISHED_M2 / sum(sizes[k] for k in demolished)
        others = ["investigated", "notice_served", "scheduled", "legalised"]
        features = []
        for k in range(ILLEGAL_BUILDINGS):
            area = sizes[k] * scale if k in demolished else sizes[k]
            ratio = self.rng.uniform(0.6, 1.6)
            width, depth = math.sqrt(area * ratio), math.sqrt(area / ratio)
            shape = placer.place(self.rng, width, depth, margin=4.0, fringe=True)
            discovered = date(2016, 3, 1) + timedelta(days=int(self.rng.integers(0, 420)))
            investigated = discovered + timedelta(days=int(self.rng.integers(2, 30)))
            props: dict[str, Any] = {
                "code": f"WJ{k + 1:04d}",
                "address": placer.address(self.rng, shape, communities),
                "campaign": CAMPAIGN,
                "floors": int(self.rng.choice([1, 1, 1, 2, 2, 3, 4])),
                "discovered_at": discovered.isoformat(),
                "investigated_at": investigated.isoformat(),
            }
            status = "demolished" if k in demolished else others[int(self.rng.integers(len(others)))]
            props["status"] = status
            if status in ("notice_served", "scheduled", "demolished"):
                props["notice_served_at"] = (investigated + timedelta(days=int(self.rng.integers(3, 20)))).isoformat()
            if status in ("scheduled", "demolished"):
                props["scheduled_at"] = (date.fromisoformat(props["notice_served_at"]) + timedelta(days=15)).isoformat()
            if status == "demolished":
                day = date.fromisoformat(props["scheduled_at"]) + timedelta(days=int(self.rng.integers(1, 20)))
                props["demolished_at"] = min(day, date(2017, 6, 28)).isoformat()
                if props["demolished_at"] < props["scheduled_at"]:
                    props["scheduled_at"] = props["demolished_at"]
            if status == "legalised":
                props["legalised_at"] = (investigated + timedelta(days=int(self.rng.integers(10, 60)))).isoformat()
            features.append(_feature(self.lonlat(shape), props))
        return features

    def operations(self, placer: _Placer) -> list[dict[str, Any]]:
        """Return the 64 joint enforcement operations since the campaign began."""
        features = []
        for serial in range(1, OPERATIONS + 1):
            cell = placer.cells[int(self.rng.integers(len(placer.cells)))]
            theme = OPERATION_THEMES[int(self.rng.integers(len(OPERATION_THEMES)))]
            held = date(2017, 1, 3) + timedelta(days=int(self.rng.integers(0, 177)))
            sub_code, sub_name = SUBDISTRICTS[cell.subdistrict][0], SUBDISTRICTS[cell.subdistrict][1]
            point = placer.scatter(self.rng, cell.polygon.centroid, 120.0)
            features.append(
                _feature(
                    self.lonlat(point),
                    {
                        "code": f"XD{serial:03d}",
                        "title": f"{sub_name}{theme}联合执法行动",
                        "theme": theme,
                        "held_on": held.isoformat(),
                        "subdistrict_code": sub_code,
                        "participants": int(self.rng.integers(20, 121)),
                    },
                )
            )
        return features

    def incidents(self, placer: _Placer, river: LineString, streets: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Return the half-year's hotline reports (with planted hotspots) and letters."""
        del streets
        items = list(ITEMS)
        weights = np.array([3.0 if i.category_code in ("01", "05") else 1.0 for i in items])
        weights /= weights.sum()
        hotspot_points: list[tuple[Point, str]] = []
        for key, item_code, count, radius, offset, _ in HOTSPOTS:
            centre = self.hotspot_centre(key, offset, river)
            self.hotspot_centres[key] = self.to_deg.transform(centre.x, centre.y)
            for _ in range(count):
                hotspot_points.append((placer.scatter(self.rng, centre, radius), item_code))
        background = HOTLINE_REPORTS - len(hotspot_points)
        reports: list[tuple[Point, Item]] = [(p, _item(code)) for p, code in hotspot_points]
        for k in range(background):
            item = items[k] if k < len(items) else items[int(self.rng.choice(len(items), p=weights))]
            reports.append((placer.anywhere(self.rng), item))
        order = self.rng.permutation(len(reports))
        features = self.cases([reports[k] for k in order], "hotline", "RX", HOTLINE_CLOSED, HOTLINE_SATISFIED)
        letters = [
            (placer.anywhere(self.rng), items[int(self.rng.choice(len(items), p=weights))]) for _ in range(LETTERS)
        ]
        features += self.cases(letters, "letter", "XF", LETTERS_CLOSED, None)
        self.mark_reworks(features)
        return features

    def mark_reworks(self, features: list[dict[str, Any]]) -> None:
        """Give every case its count of failed checks (返工): 6 % of closed cases were sent back once, 1 % twice."""
        for feature in features:
            props = feature["properties"]
            draw = self.rework_rng.random()
            props["reworks"] = 0 if props["status"] != "closed" else 2 if draw < 0.01 else 1 if draw < 0.07 else 0

    def hotspot_centre(self, key: str, offset: tuple[float, float] | None, river: LineString) -> Point:
        """Return where a planted hotspot is centred (see fixtures/geojson/README.md)."""
        if key == "market":
            return max(self.market_shapes[:9], key=lambda s: s.area).centroid
        if key == "river":
            return river.interpolate(river.project(self.at(-2.0, 1.0)))
        assert offset is not None
        return self.at(*offset)

    def cases(
        self,
        reports: Sequence[tuple[Point, Item]],
        source: str,
        prefix: str,
        closed: int,
        satisfied: int | None,
    ) -> list[dict[str, Any]]:
        """Return incidents with reported, due and closed times; exactly ``closed`` are closed."""
        span = (HALF_YEAR[1] - HALF_YEAR[0]).total_seconds()
        times = sorted(HALF_YEAR[0] + timedelta(seconds=float(self.rng.uniform(0, span))) for _ in reports)
        times = [t.replace(hour=int(self.rng.integers(8, 21)), microsecond=0) for t in times]
        times.sort()
        age = np.array([(HALF_YEAR[1] - t).total_seconds() / 86400 for t in times])
        closing_order = np.argsort(-(age + self.rng.uniform(0, 45, size=len(times))), kind="stable")
        closed_set = set(closing_order[:closed].tolist())
        satisfied_set = set()
        if satisfied is not None:
            closed_list = sorted(closed_set)
            satisfied_set = set(self.rng.choice(closed_list, size=satisfied, replace=False).tolist())
        open_states = ("collected", "registered", "dispatched", "handling", "feedback", "verified")
        features = []
        for k, ((point, item), reported) in enumerate(zip(reports, times, strict=True)):
            due = add_working_time(reported, item.time_limit, item.time_unit)
            props: dict[str, Any] = {
                "code": f"{prefix}2017-{k + 1:06d}",
                "source": source,
                "item_code": item.code,
                "description": f"{'市民来电' if source == 'hotline' else '群众来信'}反映：{item.name_zh}",
                "reported_at": _iso(reported),
                "due_at": _iso(due),
            }
            if k in closed_set:
                late = self.rng.random() < 0.12
                allowed = (due - reported).total_seconds()
                took = allowed * (self.rng.uniform(1.05, 2.5) if late else self.rng.uniform(0.2, 0.95))
                props["status"] = "closed"
                props["closed_at"] = _iso(reported + timedelta(seconds=round(took)))
                if satisfied is not None:
                    if k in satisfied_set:
                        props["satisfaction"] = "satisfied" if self.rng.random() < 0.75 else "basically_satisfied"
                    else:
                        props["satisfaction"] = "dissatisfied"
            else:
                props["status"] = open_states[int(self.rng.integers(len(open_states)))]
            features.append(_feature(self.lonlat(point), props))
        return features


class _Placer:
    """Places footprints and points inside the city's cells, keeping footprints apart."""

    def __init__(self, cells: list[Cell], streets: list[dict[str, Any]]) -> None:
        self.cells = sorted(cells, key=lambda c: c.code)
        self.city = shapely.union_all([c.polygon for c in cells])
        self.taken: list[Polygon] = []
        self.streets = streets
        self.street_tree = STRtree([s["line"] for s in streets])
        self.cell_tree = STRtree([c.polygon for c in self.cells])
        centre = self.city.centroid
        self.fringe_weights = np.array([c.polygon.centroid.distance(centre) ** 2 for c in self.cells])
        self.fringe_weights /= self.fringe_weights.sum()

    def place(
        self, rng: np.random.Generator, width: float, depth: float, margin: float, fringe: bool = False
    ) -> Polygon:
        """Return a rotated rectangle inside one cell, ``margin`` m from its edges and clear of others."""
        for _ in range(500):
            index = (
                int(rng.choice(len(self.cells), p=self.fringe_weights))
                if fringe
                else int(rng.integers(len(self.cells)))
            )
            cell = self.cells[index].polygon
            x0, y0, x1, y1 = cell.bounds
            centre = Point(rng.uniform(x0, x1), rng.uniform(y0, y1))
            shape = affinity.rotate(
                box(centre.x - width / 2, centre.y - depth / 2, centre.x + width / 2, centre.y + depth / 2),
                float(rng.uniform(-35, 35)),
            )
            if not cell.buffer(-margin).contains(shape):
                continue
            if any(shape.distance(other) < 3.0 for other in self.taken):
                continue
            self.taken.append(shape)
            return shape
        raise RuntimeError("could not place a footprint: the city is too full")

    def scatter(self, rng: np.random.Generator, centre: Point, radius: float, within: Polygon | None = None) -> Point:
        """Return a point within ``radius`` m of ``centre`` (normally distributed), inside the city."""
        area = within if within is not None else self.city
        for _ in range(1000):
            r = abs(rng.normal(0, radius / 2))
            if r > radius:
                continue
            theta = rng.uniform(0, 2 * math.pi)
            point = Point(centre.x + r * math.cos(theta), centre.y + r * math.sin(theta))
            if area.contains(point):
                return point
        raise RuntimeError("could not scatter a point inside the city")

    def anywhere(self, rng: np.random.Generator) -> Point:
        """Return a point uniformly inside the city, at least 2 m from any grid edge."""
        x0, y0, x1, y1 = self.city.bounds
        while True:
            point = Point(rng.uniform(x0, x1), rng.uniform(y0, y1))
            if self._clear(point):
                return point

    def along(self, rng: np.random.Generator, line: LineString) -> Point:
        """Return a point beside ``line``, 4-12 m off it, inside the city and off any grid edge."""
        while True:
            at = float(rng.uniform(0, line.length - 1.0))
            base, ahead = line.interpolate(at), line.interpolate(at + 1.0)
            offset = float(rng.choice([-1.0, 1.0]) * rng.uniform(4, 12))
            # perpendicular to the street's direction at that point
            point = Point(base.x - (ahead.y - base.y) * offset, base.y + (ahead.x - base.x) * offset)
            if self._clear(point):
                return point

    def _clear(self, point: Point) -> bool:
        """Return True when ``point`` is inside the city and at least 2 m from every grid edge."""
        if not self.city.contains(point):
            return False
        near = self.cell_tree.query(point, predicate="dwithin", distance=2.0)
        return len(near) == 1 and self.cells[int(near[0])].polygon.exterior.distance(point) >= 2.0

    def area_name(self, shape: Polygon) -> str:
        """Return the name root of the nearest street, for naming a place."""
        street = self.streets[int(self.street_tree.nearest(shape.centroid))]
        name: str = street["name"]
        for suffix in ("大道", "路", "街"):
            name = name.split(suffix)[0]
        return name

    def address(self, rng: np.random.Generator, shape: Polygon, communities: dict[str, tuple[str, str, int]]) -> str:
        """Return a plausible address: community, nearest street, house number."""
        cell = self.cells[int(self.cell_tree.query(shape.centroid, predicate="within")[0])]
        street = self.streets[int(self.street_tree.nearest(shape.centroid))]
        return f"{communities[cell.community_code][0]}{street['name']}{int(rng.integers(1, 400))}号旁"


def _item(code: str) -> Item:
    return next(i for i in ITEMS if i.code == code)


def _centre(cells: Sequence[Cell]) -> Point:
    return Point(
        float(np.mean([c.polygon.centroid.x for c in cells])),
        float(np.mean([c.polygon.centroid.y for c in cells])),
    )


def _bisect(cells: list[Cell], parts: int) -> list[list[Cell]]:
    """Split cells into ``parts`` contiguous groups of near-equal size by recursive straight cuts."""
    groups = _try_bisect(cells, parts)
    if groups is None:
        raise RuntimeError(f"cannot split {len(cells)} cells into {parts} contiguous communities")
    return groups


def _try_bisect(cells: list[Cell], parts: int) -> list[list[Cell]] | None:
    if parts == 1:
        return [cells] if _connected(cells) else None
    left_parts = parts // 2
    target = round(len(cells) * left_parts / parts)
    cols = [c.col for c in cells]
    rows = [c.row for c in cells]
    keys = [
        lambda c: (c.col, c.row),
        lambda c: (c.row, c.col),
        lambda c: (c.col + c.row, c.col),
        lambda c: (c.col - c.row, c.col),
    ]
    if (max(cols) - min(cols)) * 1.3 < max(rows) - min(rows):
        keys[0], keys[1] = keys[1], keys[0]
    for slack in (0, 1, -1, 2, -2):
        for key in keys:
            ordered = sorted(cells, key=key)
            first, second = ordered[: target + slack], ordered[target + slack :]
            if not (_connected(first) and _connected(second)):
                continue
            left = _try_bisect(first, left_parts)
            right = _try_bisect(second, parts - left_parts) if left is not None else None
            if left is not None and right is not None:
                return left + right
    return None


def _connected(cells: list[Cell]) -> bool:
    """Return True when the cells form one piece through shared edges."""
    if not cells:
        return False
    remaining = {(c.col, c.row) for c in cells}
    stack = [next(iter(remaining))]
    remaining.discard(stack[0])
    while stack:
        col, row = stack.pop()
        for neighbour in ((col + 1, row), (col - 1, row), (col, row + 1), (col, row - 1)):
            if neighbour in remaining:
                remaining.discard(neighbour)
                stack.append(neighbour)
    return not remaining


def _catmull_rom(points: list[tuple[float, float]], steps: int) -> list[tuple[float, float]]:
    """Return a smooth curve through ``points`` (centripetal-free uniform Catmull-Rom)."""
    padded = [points[0], *points, points[-1]]
    curve = []
    for k in range(1, len(padded) - 2):
        p0, p1, p2, p3 = (np.array(padded[k + d]) for d in (-1, 0, 1, 2))
        for s in range(steps):
            t = s / steps
            curve.append(
                tuple(
                    0.5
                    * (
                        (2 * p1)
                        + (-p0 + p2) * t
                        + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                        + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
                    )
                )
            )
    curve.append(points[-1])
    return [(float(x), float(y)) for x, y in curve]


def _orient(geom: BaseGeometry) -> BaseGeometry:
    """Return ``geom`` with exterior rings counter-clockwise (RFC 7946 right-hand rule)."""
    if geom.geom_type == "Polygon":
        return shapely.geometry.polygon.orient(geom, 1.0)
    if geom.geom_type == "MultiPolygon":
        return shapely.geometry.MultiPolygon([shapely.geometry.polygon.orient(p, 1.0) for p in geom.geoms])
    return geom


def _geojson_multi(geom: BaseGeometry) -> dict[str, Any]:
    if geom.geom_type == "Polygon":
        geom = shapely.geometry.MultiPolygon([geom])
    return _rounded(mapping(_orient(geom)))


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, DECIMALS)
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def _iso(moment: datetime) -> str:
    return moment.astimezone(CST).isoformat()


def _feature(geometry: dict[str, Any] | None, properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Feature", "geometry": geometry, "properties": properties}


def write_layers(layers: dict[str, list[dict[str, Any]]], directory: Path) -> list[Path]:
    """Write each layer as ``<name>.geojson``, one feature per line (stable diffs); return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, features in layers.items():
        path = directory / f"{name}.geojson"
        lines = [json.dumps(f, ensure_ascii=False, separators=(",", ":")) for f in features]
        path.write_text('{"type":"FeatureCollection","features":[\n' + ",\n".join(lines) + "\n]}\n", encoding="utf-8")
        written.append(path)
    return written


def planted_hotspots(seed: int = SEED) -> dict[str, tuple[float, float]]:
    """Return the centre (lon, lat) of each planted hotspot, by running the generator."""
    generator = Generator(seed)
    generator.layers()
    return generator.hotspot_centres


def generate(directory: Path, seed: int = SEED) -> list[Path]:
    """Generate the Wenshan fixture into ``directory`` and return the files written."""
    generator = Generator(seed)
    return write_layers(generator.layers(), directory)
