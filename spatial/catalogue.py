"""The enforcement catalogue: Wenshan's "10大类147项", 10 categories and 147 items of matters.

Category codes 01-05 follow the event classes of the national digital urban-management standards
(CJ/T 214 / GB/T 30428.2: 市容环境, 宣传广告, 施工管理, 突发事件, 街面秩序); 06-10 are city extensions.
Inside a category, items the national event list names come first under its names (``national=True``),
then the city's own items. Each item carries the time limit a dispatched case must be handled within
and the role that answers for it. Pure data: no database, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "CATEGORIES",
    "ITEMS",
    "Category",
    "Item",
    "PkTheme",
    "ResponsibleRole",
    "TimeUnit",
    "category",
    "item",
]

TimeUnit = Literal["working_hours", "working_days"]
ResponsibleRole = Literal["squad", "grid_member", "community_cadre", "street_chief", "river_chief"]
PkTheme = Literal["demolition", "outdoor_advertising", "sanitation", "business_premises"]


@dataclass(frozen=True, slots=True)
class Category:
    """One of the ten categories (大类); ``pk_theme`` is the quarterly PK theme it feeds, if any."""

    code: str
    name_zh: str
    name_en: str
    pk_theme: PkTheme | None


@dataclass(frozen=True, slots=True)
class Item:
    """One enforcement matter (小项): its code, names, time limit and responsible role."""

    code: str
    category_code: str
    name_zh: str
    name_en: str
    time_limit: int
    time_unit: TimeUnit
    responsible_role: ResponsibleRole
    national: bool


CATEGORIES: tuple[Category, ...] = (
    Category("01", "市容环境", "City appearance & environment", "sanitation"),
    Category("02", "宣传广告", "Publicity & small ads", "outdoor_advertising"),
    Category("03", "施工管理", "Construction management", None),
    Category("04", "突发事件", "Emergencies", None),
    Category("05", "街面秩序", "Street order", "business_premises"),
    Category("06", "违法建设", "Illegal construction", "demolition"),
    Category("07", "河道管理", "Rivers & waterways", None),
    Category("08", "园林绿化", "Parks & greening", None),
    Category("09", "户外广告", "Outdoor advertising facilities", "outdoor_advertising"),
    Category("10", "经营场所", "Markets & business premises", "business_premises"),
)

_HOURS: Final[TimeUnit] = "working_hours"
_DAYS: Final[TimeUnit] = "working_days"


def _item(
    code: str,
    name_zh: str,
    name_en: str,
    time_limit: int,
    time_unit: TimeUnit,
    responsible_role: ResponsibleRole,
    *,
    national: bool = False,
) -> Item:
    """Return an Item whose category code is the first two digits of ``code``."""
    return Item(code, code[:2], name_zh, name_en, time_limit, time_unit, responsible_role, national)


ITEMS: tuple[Item, ...] = (
    # 01 市容环境: sanitation, handled within hours.
    _item("0101", "暴露垃圾", "Exposed refuse", 4, _HOURS, "grid_member", national=True),
    _item("0102", "积存垃圾渣土", "Accumulated refuse and spoil", 24, _HOURS, "street_chief", national=True),
    _item("0103", "道路不洁", "Unclean road", 4, _HOURS, "street_chief", national=True),
    _item("0104", "水域不洁", "Unclean water surface", 8, _HOURS, "river_chief", national=True),
    _item("0105", "绿地脏乱", "Littered green space", 8, _HOURS, "grid_member", national=True),
    _item("0106", "废弃车辆", "Abandoned vehicle", 24, _HOURS, "squad", national=True),
    _item("0107", "废弃家具设备", "Discarded furniture", 24, _HOURS, "grid_member", national=True),
    _item("0108", "非装饰性树挂", "Non-decorative tree hangings", 24, _HOURS, "grid_member", national=True),
    _item("0109", "乱堆物堆料", "Unauthorised piling of goods", 24, _HOURS, "squad", national=True),
    _item("0110", "违章接坡", "Unauthorised kerb ramp", 24, _HOURS, "squad", national=True),
    _item("0111", "露天烧烤", "Open-air barbecue", 4, _HOURS, "squad", national=True),
    _item("0112", "沿街晾挂", "Laundry hung along the street", 8, _HOURS, "community_cadre", national=True),
    _item("0113", "露天焚烧垃圾", "Open burning of refuse", 4, _HOURS, "squad"),
    _item("0114", "餐饮油烟污染", "Restaurant cooking fumes", 24, _HOURS, "squad"),
    _item("0115", "垃圾桶满溢", "Overflowing litter bins", 4, _HOURS, "street_chief"),
    # 02 宣传广告: publicity and small ads, handled within days.
    _item("0201", "违章张贴悬挂广告", "Unauthorised posted or hung ads", 1, _DAYS, "squad", national=True),
    _item("0202", "乱涂乱画", "Graffiti", 1, _DAYS, "grid_member", national=True),
    _item("0203", "非法小广告", "Illegal small ads", 1, _DAYS, "grid_member", national=True),
    _item("0204", "占道广告牌", "Ad boards on the footway", 1, _DAYS, "squad", national=True),
    _item("0205", "街头散发广告", "Street leafleting", 1, _DAYS, "squad", national=True),
    _item("0206", "违规悬挂横幅", "Unauthorised banners", 1, _DAYS, "squad"),
    _item("0207", "车体广告违规", "Non-compliant vehicle-body ads", 3, _DAYS, "squad"),
    _item("0208", "流动广告车", "Mobile advertising vehicle", 1, _DAYS, "squad"),
    _item("0209", "高音喇叭宣传扰民", "Loudspeaker promotion noise", 1, _DAYS, "squad"),
    _item("0210", "橱窗乱贴", "Cluttered shop-window posters", 2, _DAYS, "grid_member"),
    _item("0211", "喷涂电话号码广告", "Sprayed phone-number ads", 2, _DAYS, "grid_member"),
    _item("0212", "充气拱门违规设置", "Unauthorised inflatable arch", 1, _DAYS, "squad"),
    _item("0213", "彩旗灯笼违规悬挂", "Unauthorised flags and lanterns", 2, _DAYS, "squad"),
    _item("0214", "广告语言文字不规范", "Non-standard wording in ads", 3, _DAYS, "squad"),
    _item("0215", "占道促销宣传", "Street promotion stand", 1, _DAYS, "squad"),
    # 03 施工管理: construction sites; dust and spills within hours, the rest within days.
    _item("0301", "施工扰民", "Construction noise nuisance", 1, _DAYS, "squad", national=True),
    _item("0302", "工地扬尘", "Construction-site dust", 24, _HOURS, "squad", national=True),
    _item("0303", "道路遗撒", "Spillage on roads", 8, _HOURS, "squad", national=True),
    _item("0304", "违规占道施工", "Unauthorised road occupation by works", 2, _DAYS, "squad", national=True),
    _item("0305", "施工废弃料", "Abandoned construction waste", 24, _HOURS, "squad", national=True),
    _item("0306", "无证掘路", "Road excavation without permit", 1, _DAYS, "squad"),
    _item("0307", "夜间违规施工", "Unpermitted night works", 4, _HOURS, "squad"),
    _item("0308", "工地围挡不规范", "Substandard site hoarding", 2, _DAYS, "squad"),
    _item("0309", "渣土车未密闭运输", "Uncovered muck truck", 4, _HOURS, "squad"),
    _item("0310", "工地出入口未冲洗车辆", "Unwashed vehicles leaving site", 8, _HOURS, "squad"),
    _item("0311", "施工裸土未覆盖", "Uncovered bare soil on site", 24, _HOURS, "squad"),
    _item("0312", "违规露天搅拌砂浆", "Mixing mortar in the open street", 1, _DAYS, "squad"),
    _item("0313", "擅自倾倒建筑垃圾", "Illegal dumping of construction waste", 24, _HOURS, "squad"),
    _item("0314", "掘路未及时恢复", "Excavated road not reinstated", 3, _DAYS, "squad"),
    _item("0315", "装修垃圾乱堆放", "Renovation waste piled outdoors", 24, _HOURS, "grid_member"),
    # 04 突发事件: emergencies, handled within one or two hours.
    _item("0401", "路面塌陷", "Road collapse", 1, _HOURS, "street_chief", national=True),
    _item("0402", "自来水管破裂", "Burst water main", 1, _HOURS, "street_chief", national=True),
    _item("0403", "燃气管道破裂", "Gas pipe rupture", 1, _HOURS, "street_chief", national=True),
    _item("0404", "下水道堵塞或破损", "Blocked or broken sewer", 2, _HOURS, "street_chief", national=True),
    _item("0405", "道路积水", "Road waterlogging", 2, _HOURS, "street_chief", national=True),
    _item("0406", "架空线缆损坏", "Damaged overhead cables", 2, _HOURS, "street_chief", national=True),
    _item("0407", "火灾", "Fire", 1, _HOURS, "street_chief", national=True),
    _item("0408", "井盖缺失破损", "Missing or broken manhole cover", 1, _HOURS, "street_chief"),
    _item("0409", "突发环境污染", "Sudden pollution incident", 2, _HOURS, "street_chief"),
    _item("0410", "树木倒伏", "Fallen tree", 2, _HOURS, "street_chief"),
    _item("0411", "广告牌匾坠落险情", "Signboard about to fall", 1, _HOURS, "squad"),
    _item("0412", "危房险情", "Dangerous building", 2, _HOURS, "community_cadre"),
    _item("0413", "山体滑坡落石", "Landslide or rockfall", 1, _HOURS, "street_chief"),
    _item("0414", "路灯杆倾倒", "Toppled lamp post", 2, _HOURS, "street_chief"),
    _item("0415", "交通设施损毁", "Damaged traffic facilities", 2, _HOURS, "street_chief"),
    # 05 街面秩序: street order, handled within days.
    _item("0501", "无照经营游商", "Unlicensed street vendors", 1, _DAYS, "squad", national=True),
    _item("0502", "流浪乞讨", "Vagrancy and begging", 1, _DAYS, "community_cadre", national=True),
    _item("0503", "占道废品收购", "Scrap buying on the street", 1, _DAYS, "squad", national=True),
    _item("0504", "店外经营", "Trading outside the shop front", 1, _DAYS, "squad", national=True),
    _item("0505", "机动车乱停放", "Illegally parked motor vehicles", 1, _DAYS, "squad", national=True),
    _item("0506", "非机动车乱停放", "Disorderly parked bicycles", 1, _DAYS, "grid_member", national=True),
    _item("0507", "黑摩的", "Unlicensed motorcycle taxis", 1, _DAYS, "squad", national=True),
    _item("0508", "占道经营", "Stalls occupying the road", 1, _DAYS, "squad", national=True),
    _item("0509", "共享单车乱停放", "Disorderly parked shared bikes", 1, _DAYS, "grid_member"),
    _item("0510", "占道洗车", "Car washing on the street", 2, _DAYS, "squad"),
    _item("0511", "违规设置路障隔离", "Unauthorised road barriers", 2, _DAYS, "squad"),
    _item("0512", "擅自设置地桩地锁", "Unauthorised parking posts and locks", 3, _DAYS, "squad"),
    _item("0513", "占用盲道", "Obstructed tactile paving", 1, _DAYS, "grid_member"),
    _item("0514", "车辆占道兜售", "Selling from parked vehicles", 1, _DAYS, "squad"),
    _item("0515", "门前三包不落实", "Shop-front duties neglected", 3, _DAYS, "community_cadre"),
    # 06 违法建设: illegal construction, handled within 5-15 days.
    # 私搭乱建 is a national 市容环境 event; Wenshan files all illegal building here so that every case
    # counts towards the quarterly demolition (拆违) PK.
    _item("0601", "私搭乱建", "Unauthorised makeshift structures", 5, _DAYS, "squad", national=True),
    _item("0602", "违法新建住宅", "Illegally built new house", 15, _DAYS, "squad"),
    _item("0603", "违法加层", "Illegal additional storey", 15, _DAYS, "squad"),
    _item("0604", "违法扩建", "Illegal extension", 10, _DAYS, "squad"),
    _item("0605", "屋顶违法搭建", "Illegal rooftop structure", 10, _DAYS, "squad"),
    _item("0606", "阳台违规外扩", "Illegally extended balcony", 7, _DAYS, "squad"),
    _item("0607", "违法搭建彩钢棚", "Illegal steel-sheet shed", 7, _DAYS, "squad"),
    _item("0608", "擅自改变建筑外立面", "Unauthorised facade alteration", 7, _DAYS, "squad"),
    _item("0609", "违法围墙圈地", "Illegal walling-in of land", 7, _DAYS, "squad"),
    _item("0610", "未批先建", "Building before approval", 10, _DAYS, "squad"),
    _item("0611", "超规划许可建设", "Building beyond planning permit", 15, _DAYS, "squad"),
    _item("0612", "临时建筑逾期未拆除", "Expired temporary building", 10, _DAYS, "squad"),
    _item("0613", "占用消防通道搭建", "Structure blocking a fire lane", 5, _DAYS, "squad"),
    _item("0614", "地下室违法开挖", "Illegal basement excavation", 10, _DAYS, "squad"),
    _item("0615", "城中村违法抢建", "Rush-built house in an urban village", 15, _DAYS, "street_chief"),
    # 07 河道管理: the Panlong River (盘龙河) and its tributaries; answered by the river chief.
    _item("0701", "向河道倾倒垃圾", "Dumping refuse into a river", 8, _HOURS, "river_chief"),
    _item("0702", "河道违法建设", "Illegal structure in a river channel", 10, _DAYS, "squad"),
    _item("0703", "非法采砂", "Illegal sand mining", 1, _DAYS, "river_chief"),
    _item("0704", "违规设置排污口", "Unauthorised sewage outfall", 3, _DAYS, "river_chief"),
    _item("0705", "污水直排入河", "Raw sewage discharged into a river", 1, _DAYS, "river_chief"),
    _item("0706", "河道护栏破损", "Damaged river railings", 2, _DAYS, "river_chief"),
    _item("0707", "侵占河道管理范围", "Encroachment on the river zone", 5, _DAYS, "river_chief"),
    _item("0708", "河岸乱堆物料", "Materials piled on a river bank", 24, _HOURS, "river_chief"),
    _item("0709", "河道违规养殖", "Illegal fish farming in a river", 3, _DAYS, "river_chief"),
    _item("0710", "河道内洗车洗衣", "Washing cars or laundry in a river", 1, _DAYS, "river_chief"),
    _item("0711", "河道淤积堵塞", "Silted or blocked channel", 3, _DAYS, "river_chief"),
    _item("0712", "河道汛期险情", "Flood danger on a river", 1, _HOURS, "river_chief"),
    _item("0713", "河岸违规种植", "Illegal cultivation on a river bank", 3, _DAYS, "river_chief"),
    _item("0714", "黑臭水体", "Black and malodorous water", 2, _DAYS, "river_chief"),
    # 08 园林绿化: parks, street trees and green space.
    _item("0801", "毁坏绿地", "Damage to green space", 1, _DAYS, "squad"),
    _item("0802", "违规砍伐树木", "Illegal tree felling", 1, _DAYS, "squad"),
    _item("0803", "占用绿地", "Occupation of green space", 3, _DAYS, "squad"),
    _item("0804", "绿地内违规停车", "Parking on green space", 1, _DAYS, "squad"),
    _item("0805", "行道树缺株枯死", "Missing or dead street trees", 5, _DAYS, "street_chief"),
    _item("0806", "树木遮挡交通设施", "Trees obscuring traffic signs", 3, _DAYS, "street_chief"),
    _item("0807", "擅自修剪树木", "Unauthorised tree pruning", 2, _DAYS, "squad"),
    _item("0808", "损毁古树名木", "Damage to a heritage tree", 1, _DAYS, "squad"),
    _item("0809", "绿地内种菜", "Vegetable plots in green space", 3, _DAYS, "community_cadre"),
    _item("0810", "树木病虫害", "Pest-infested trees", 5, _DAYS, "street_chief"),
    _item("0811", "园林设施损坏", "Damaged park facilities", 3, _DAYS, "street_chief"),
    _item("0812", "公园内无序经营", "Unauthorised trading in a park", 1, _DAYS, "squad"),
    _item("0813", "绿篱缺损", "Damaged hedges", 5, _DAYS, "street_chief"),
    _item("0814", "绿地内放养畜禽", "Livestock in green space", 1, _DAYS, "community_cadre"),
    # 09 户外广告: outdoor advertising facilities and shop signs.
    _item("0901", "户外广告设置不规范", "Non-compliant outdoor ad", 3, _DAYS, "squad"),
    _item("0902", "广告牌匾破损", "Damaged ad or shop sign", 2, _DAYS, "squad"),
    _item("0903", "未经审批设置户外广告", "Unpermitted outdoor ad", 3, _DAYS, "squad"),
    _item("0904", "户外广告逾期未拆除", "Expired outdoor ad not removed", 3, _DAYS, "squad"),
    _item("0905", "楼顶广告违规", "Non-compliant rooftop ad", 5, _DAYS, "squad"),
    _item("0906", "门头招牌不规范", "Non-compliant shop-front sign", 3, _DAYS, "squad"),
    _item("0907", "一店多招", "Several signs on one shop", 3, _DAYS, "squad"),
    _item("0908", "广告牌匾灯光缺亮", "Ad lighting partly out", 2, _DAYS, "squad"),
    _item("0909", "电子显示屏违规", "Non-compliant LED screen", 3, _DAYS, "squad"),
    _item("0910", "立柱广告违规", "Non-compliant pole-mounted ad", 5, _DAYS, "squad"),
    _item("0911", "墙体广告违规", "Non-compliant wall-painted ad", 3, _DAYS, "squad"),
    _item("0912", "广告画面污损", "Soiled ad face", 2, _DAYS, "grid_member"),
    _item("0913", "空置广告牌未清理", "Empty billboard not removed", 3, _DAYS, "squad"),
    _item("0914", "广告设施安全隐患", "Unsafe ad structure", 1, _DAYS, "squad"),
    # 10 经营场所: markets and trades that spill onto the street.
    _item("1001", "农产品交易市场秩序", "Farm-produce market disorder", 1, _DAYS, "squad"),
    _item("1002", "汽车交易市场占道", "Car market spilling onto the road", 1, _DAYS, "squad"),
    _item("1003", "维修加工占道", "Repair workshop on the footway", 1, _DAYS, "squad"),
    _item("1004", "五金建材占道", "Hardware shop on the footway", 1, _DAYS, "squad"),
    _item("1005", "市场周边乱摆卖", "Stalls around a market", 1, _DAYS, "squad"),
    _item("1006", "餐饮门店占道", "Restaurant seating on the footway", 1, _DAYS, "squad"),
    _item("1007", "夜市摊区秩序", "Night-market disorder", 1, _DAYS, "squad"),
    _item("1008", "洗车场污水外溢", "Car-wash waste water overflow", 2, _DAYS, "squad"),
    _item("1009", "废品收购站脏乱", "Untidy scrap yard", 3, _DAYS, "squad"),
    _item("1010", "快递网点占道分拣", "Parcel sorting on the footway", 1, _DAYS, "squad"),
    _item("1011", "花卉苗木市场占道", "Flower market spilling onto the road", 1, _DAYS, "squad"),
    _item("1012", "货运占道装卸", "Loading goods on the footway", 1, _DAYS, "squad"),
    _item("1013", "经营场所门前不洁", "Dirty business frontage", 1, _DAYS, "community_cadre"),
    _item("1014", "家具市场占道", "Furniture market spilling onto the road", 1, _DAYS, "squad"),
    _item("1015", "娱乐场所噪声扰民", "Entertainment venue noise", 1, _DAYS, "squad"),
)

_CATEGORY_BY_CODE: Final[dict[str, Category]] = {c.code: c for c in CATEGORIES}
_ITEM_BY_CODE: Final[dict[str, Item]] = {i.code: i for i in ITEMS}


def category(code: str) -> Category:
    """Return the category with this 2-digit code; raise ValueError naming the valid codes otherwise."""
    try:
        return _CATEGORY_BY_CODE[code]
    except KeyError:
        raise ValueError(
            f"unknown catalogue category code {code!r}: expected a 2-digit code from '01' to '10'"
        ) from None


def item(code: str) -> Item:
    """Return the item with this 4-digit code; raise ValueError explaining the code format otherwise."""
    try:
        return _ITEM_BY_CODE[code]
    except KeyError:
        raise ValueError(
            f"unknown catalogue item code {code!r}: expected 4 digits, a category code '01'-'10' "
            "followed by a 2-digit serial, e.g. '0102'"
        ) from None
