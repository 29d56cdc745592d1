"""The request-kind table: every command that builds a CVProcess body is a row here.

A row names the command, its req_key, action and version, its image slots and every
documented body field with type, default, range and help. The CLI generates each
command's flags from its row, the payload builder fills the body from it, and the
sandbox validates against it, so a new field or a new kind is a table edit.

Sources are tagged in the API reference; a range whose source is a third-party wrapper
or a gateway example is ``confirmed=False``: it is enforced by default and skipped with
``--no-validate``.
"""

# No `from __future__ import annotations` here: NamedTuple would compile every string
# annotation into a ForwardRef at import time.
from collections.abc import Mapping
from typing import Final, Literal, NamedTuple

FieldType = Literal["int", "float", "str", "bool"]

DEFAULT_ACTION: Final = "CVProcess"
DEFAULT_VERSION: Final = "2022-08-31"
SUBMIT_ACTION: Final = "CVSync2AsyncSubmitTask"
RESULT_ACTION: Final = "CVSync2AsyncGetResult"
CANCEL_ACTION: Final = "CVCancelTask"
CANCEL_VERSION: Final = "2024-06-06"
SEED_MAX: Final = 2**31 - 1


# Rows are NamedTuples rather than dataclasses: the table is imported on every start,
# even for --help, and NamedTuple classes are several times cheaper to create.


class Range(NamedTuple):
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    # False when the bound comes from a wrapper or an example, not the official page.
    confirmed: bool = False

    def contains(self, value: float) -> bool:
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)

    def describe(self) -> str:
        lo = "-inf" if self.lo is None else _num(self.lo)
        hi = "inf" if self.hi is None else _num(self.hi)
        return f"{'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class Field(NamedTuple):
    """One body field (or one CLI-only option consumed by the kind's assembler)."""

    name: str  # body key; dotted for nested objects ("logo_info.add_logo")
    type: FieldType
    help: str
    default: object = None  # sent when not None
    server_default: object = None  # documented server default, shown in help, not sent
    flag: str = ""  # option name without dashes; derived from the name when empty
    short: str = ""  # one-letter alias, with its dash ("-W")
    range: Range | None = None
    # CLI spelling -> value sent on the wire (an enum shown by its names).
    choices: Mapping[str, object] | None = None
    panel: str = "Generation"
    positional: bool = False
    required: bool = False
    wire: bool = True  # False: a CLI-only option that the kind's assembler turns into fields
    metavar: str = ""

    @property
    def option(self) -> str:
        return self.flag or self.name.rsplit(".", 1)[-1].replace("_", "-")

    @property
    def param(self) -> str:
        """The Python identifier of the generated command parameter."""
        return self.option.replace("-", "_")

    @property
    def shown_default(self) -> object:
        return self.default if self.default is not None else self.server_default


class ImageSlot(NamedTuple):
    """Where an image input goes in the body.

    ``array``: appended to ``binary_data_base64`` (local data) or ``image_urls`` (URLs),
    in slot order. ``uri``: a string field that takes a URL, or for local data the
    reference ``uri://binary_data?index=N`` into ``binary_data_base64``.
    """

    name: str  # parameter name; positional slots are arguments, the others options
    help: str
    wire: Literal["array", "uri"] = "array"
    field: str = ""  # the URL field of a uri slot
    switch: str = ""  # bool field set to true when the slot is filled
    positional: bool = False
    required: bool = False
    flag: str = ""  # option name for non-positional slots
    # "control" slots take TYPE:IMAGE[:STRENGTH] and are repeatable (controlnet).
    parse: Literal["plain", "control"] = "plain"
    multiple: bool = False

    @property
    def option(self) -> str:
        return self.flag or self.name.replace("_", "-")


class Kind(NamedTuple):
    command: str
    req_key: str
    summary: str
    example: str
    fields: tuple[Field, ...]
    slots: tuple[ImageSlot, ...] = ()
    action: str = DEFAULT_ACTION
    version: str = DEFAULT_VERSION
    # Name of the assembler in payload.ASSEMBLERS that derives fields from CLI-only
    # options and image geometry ("" when the fields map one to one).
    assembler: str = ""
    description: str = ""

    def field(self, name: str) -> Field:
        for item in self.fields:
            if item.name == name or item.param == name:
                return item
        raise KeyError(name)

    @property
    def wire_fields(self) -> tuple[Field, ...]:
        return tuple(item for item in self.fields if item.wire)


# --- fields every kind shares -------------------------------------------------------

# The table is laid out by hand, one row per field: keep the formatter away from it.
# fmt: off
SEED = Field("seed", "int", "Random seed; -1 draws a fresh one (recorded in the sidecar).",
             default=-1, range=Range(-1, SEED_MAX), short="-s")
RETURN_URL = Field("return_url", "bool",
                   "Ask for result URLs instead of base64 (volccli downloads them at once).",
                   default=False, panel="Output")
LOGO_POSITIONS: Final = {"bottom-right": 0, "bottom-left": 1, "top-left": 2, "top-right": 3}
LOGO_LANGUAGES: Final = {"zh": 0, "en": 1}
WATERMARK = (
    Field("logo_info.add_logo", "bool", "Add the visible 'AI generated' watermark.",
          flag="watermark", panel="Watermark"),
    Field("logo_info.position", "int", "Watermark corner.", flag="watermark-position",
          choices=LOGO_POSITIONS, server_default="bottom-right", panel="Watermark"),
    Field("logo_info.language", "int", "Watermark language: zh ('AI生成') or en.",
          flag="watermark-language", choices=LOGO_LANGUAGES, server_default="zh",
          panel="Watermark"),
    Field("logo_info.opacity", "float", "Watermark opacity, 1 = opaque.", flag="watermark-opacity",
          range=Range(0, 1, confirmed=True), server_default=1, panel="Watermark"),
    Field("logo_info.logo_text_content", "str", "Custom watermark text.", flag="watermark-text",
          panel="Watermark"),
)
COMMON: Final = (SEED, RETURN_URL, *WATERMARK)


def _prompt(
    required: bool = True, help: str = "Text prompt; '-' reads stdin, @FILE reads a file."
) -> Field:
    return Field("prompt", "str", help, positional=True, required=required, metavar="PROMPT")


CONTROL_TYPES: Final = ("canny", "depth", "pose")
CONTROL_STRENGTH: Final = Range(0, 1, lo_open=True, confirmed=False)
CONTROL_DEFAULT_STRENGTH: Final = 0.6
LIGHT_POSITIONS: Final = (
    "Left Light",
    "Right Light",
    "Top Light",
    "Bottom Light",
    "Top Left Light",
    "Top Right Light",
    "Bottom Left Light",
    "Bottom Right Light",
)
PROMPT_FIELDS: Final = ("prompt", "custom_prompt", "both")
SIDE = Range(0, 1, lo_open=True)

TXT2IMG = Kind(
    command="txt2img",
    req_key="high_aes_general_v14",
    summary="Generate an image from a text prompt.",
    example='volccli txt2img "a red bicycle in the rain" -W 768 -H 512 -n 2',
    fields=(
        _prompt(),
        Field("model_version", "str", "Model version.", default="general_v1.4"),
        Field("width", "int", "Output width in pixels.", default=512, short="-W",
              range=Range(256, 768)),
        Field("height", "int", "Output height in pixels.", default=512, short="-H",
              range=Range(256, 768)),
        Field("scale", "float", "How closely to follow the prompt.", default=3.0,
              range=Range(1, 30)),
        Field("ddim_steps", "int", "Sampling steps.", default=25, flag="steps", range=Range(1, 50)),
        Field("use_rephraser", "bool", "Let the service expand the prompt.", default=True,
              flag="rephraser"),
        Field("use_predict_tags", "bool", "Let the service predict style tags.", default=True,
              flag="predict-tags"),
        *COMMON,
    ),
)

EDIT = Kind(
    command="edit",
    req_key="byteedit_v2.0",
    summary="Edit an image by instruction (SeedEdit).",
    example='volccli edit photo.jpg "make the jacket red"',
    slots=(
        ImageSlot("image", "Image to edit: path, URL, '-' or data: URI.", positional=True,
                  required=True),
    ),
    fields=(
        _prompt(help="Edit instruction; '-' reads stdin, @FILE reads a file."),
        Field("negative_prompt", "str", "What to avoid.", flag="negative", short="-N"),
        Field("scale", "float", "Text weight: higher follows the prompt, lower keeps the image.",
              default=0.5, range=Range(0, 1)),
        *COMMON,
    ),
)

OUTPAINT = Kind(
    command="outpaint",
    req_key="i2i_outpainting",
    summary="Extend an image beyond its edges.",
    example='volccli outpaint room.jpg "a sunny garden" --aspect 16:9',
    description=(
        "Ratio mode grows the image by --top/--bottom/--left/--right (or --expand, or "
        "--aspect); canvas mode takes an already enlarged IMAGE plus --mask."
    ),
    slots=(
        ImageSlot("image", "Image to extend (the prepared canvas with --mask).", positional=True,
                  required=True),
        ImageSlot("mask", "Canvas mode: mask of the area to fill, same size as IMAGE.",
                  flag="mask"),
    ),
    assembler="outpaint",
    fields=(
        _prompt(required=False, help="What to paint in the new area (optional)."),
        Field("top", "float", "Grow the top by this ratio of the height.", range=SIDE,
              panel="Extent"),
        Field("bottom", "float", "Grow the bottom by this ratio of the height.", range=SIDE,
              panel="Extent"),
        Field("left", "float", "Grow the left by this ratio of the width.", range=SIDE,
              panel="Extent"),
        Field("right", "float", "Grow the right by this ratio of the width.", range=SIDE,
              panel="Extent"),
        Field("expand", "float", "Grow all four sides by this ratio.", range=SIDE, wire=False,
              panel="Extent"),
        Field("aspect", "str", "Grow around the centre to reach this aspect, e.g. 16:9.",
              wire=False, panel="Extent", metavar="W:H"),
        Field("prompt_field", "str",
              "Body field that carries the prompt (the docs disagree; 'both' sends both).",
              wire=False, choices={name: name for name in PROMPT_FIELDS},
              server_default="both"),
        Field("scale", "float", "How closely to follow the prompt.", default=7.0,
              range=Range(1, 20)),
        Field("steps", "int", "Sampling steps; more is finer but slower.", default=30,
              range=Range(1, 50)),
        Field("strength", "float", "Smaller stays closer to the original.", default=0.8,
              range=Range(0.1, 1.0)),
        Field("max_width", "int", "Resize ceiling of the result's width.", default=1920,
              range=Range(1, 4096)),
        Field("max_height", "int", "Resize ceiling of the result's height.", default=1920,
              range=Range(1, 4096)),
        *COMMON,
    ),
)

PRODUCT_STYLE = Kind(
    command="product-style",
    req_key="img2img_e_commerce_style",
    summary="Place a product photo in a styled scene (AI marketing image).",
    example='volccli product-style bottle.png --ref scene.jpg --prompt "marble table, warm light"',
    description=(
        "Composition modes: keep (the product's layout, --longer-side), auto (--canvas-width/"
        "--canvas-height with --auto-offset-x/y and --auto-scale) or manual (--offset-x/y)."
    ),
    slots=(
        ImageSlot("product", "Product image: path, URL, '-' or data: URI.", wire="uri",
                  field="product_image_input", positional=True, required=True),
        ImageSlot("ref", "Reference image for the style.", wire="uri", field="ref_image_input",
                  switch="ref_switch", required=True, flag="ref"),
        ImageSlot("mask", "Manual product mask.", wire="uri", field="mask_image_input",
                  switch="mask_image_switch", flag="mask"),
        ImageSlot("light", "Custom light map.", wire="uri", field="light_image_input",
                  switch="upload_light_switch", flag="light-map"),
    ),
    assembler="product_style",
    fields=(
        Field("positive_prompt", "str", "Scene description.", flag="prompt", short="-p"),
        Field("negative_prompt", "str", "What to avoid.", flag="negative", short="-N"),
        Field("fixed_positive_prompt", "str", "Fixed positive prompt appended by the service."),
        Field("fixed_negative_prompt", "str", "Fixed negative prompt appended by the service."),
        Field("product_weight", "float", "Product fidelity (above 1.3 the API errors).",
              range=Range(0, 1.3)),
        Field("product_edge_weight", "float", "Edge weight; 0.1-0.2 helps edge artefacts.",
              range=Range(0, 1), server_default=0),
        Field("product_alpha_switch", "bool", "Use the product's alpha channel as its cut-out.",
              flag="product-alpha"),
        Field("product_safe_switch", "bool", "Keep product detail exactly, no relighting.",
              flag="product-safe", server_default=False),
        Field("seg_prompt", "str", "Which object to cut out when there are several."),
        Field("mask_invert_switch", "bool", "Invert the mask.", flag="mask-invert",
              server_default=True),
        Field("ref_switch", "bool", "Use the reference image (on when --ref is given).",
              flag="ref-switch"),
        Field("ref_weight", "float", "Reference weight (0-1 recommended).", range=Range(0, 2)),
        Field("ref_end_at", "float", "Fraction of the run the reference guides (1 = all).",
              range=Range(0, 1)),
        Field("composition", "str", "Composition mode.", wire=False, panel="Composition",
              choices={'keep': 'keep', 'auto': 'auto', 'manual': 'manual'},
              server_default="keep"),
        Field("longer_side", "int", "Keep mode: the output's longer side.", panel="Composition",
              range=Range(64, 4096), server_default=1600),
        Field("canvas_width", "int", "Auto mode: canvas width.", panel="Composition",
              range=Range(64, 4096)),
        Field("canvas_height", "int", "Auto mode: canvas height.", panel="Composition",
              range=Range(64, 4096)),
        Field("auto_offset_x", "int", "Auto mode: product centre x in % of the canvas.",
              panel="Composition", range=Range(0, 100)),
        Field("auto_offset_y", "int", "Auto mode: product centre y in % of the canvas.",
              panel="Composition", range=Range(0, 100)),
        Field("auto_scale", "float", "Auto mode: product scale on the canvas.",
              panel="Composition", range=Range(0, 1, lo_open=True)),
        Field("offset_x", "int", "Manual mode: product x offset in pixels.", panel="Composition"),
        Field("offset_y", "int", "Manual mode: product y offset in pixels.", panel="Composition"),
        Field("crop_prodcut_switch", "bool", "Manual mode: crop the product at the canvas edge.",
              flag="crop-product", panel="Composition"),
        Field("auto_composition_switch", "bool", "Set by --composition auto.",
              flag="auto-composition", panel="Composition"),
        Field("manual_composition_switch", "bool", "Set by --composition manual.",
              flag="manual-composition", panel="Composition"),
        Field("preset_light_switch", "bool", "Use a preset light (on with --light-position).",
              flag="preset-light", panel="Light"),
        Field("light_position", "str", "Preset light position.", panel="Light",
              choices={name: name for name in LIGHT_POSITIONS},
              server_default="Top Left Light"),
        Field("upload_light_switch", "bool", "Use the --light-map image (on when given).",
              flag="upload-light", panel="Light"),
        Field("mask_image_switch", "bool", "Use the --mask image (on when given).",
              flag="mask-switch"),
        *COMMON,
    ),
)

CONTROLNET = Kind(
    command="controlnet",
    req_key="high_aes_scheduler_svr_controlnet_v2.0",
    summary="Generate from a prompt guided by canny, depth or pose control images.",
    example='volccli controlnet "a robot dancing" --control pose:dancer.jpg:0.8',
    slots=(
        ImageSlot("control",
                  "Control image TYPE:IMAGE[:STRENGTH]; TYPE is canny, depth or pose, "
                  "STRENGTH in (0, 1] (default 0.6). Repeatable.",
                  required=True, parse="control", multiple=True, flag="control"),
    ),
    assembler="controlnet",
    fields=(
        _prompt(),
        Field("model_version", "str", "Model version.", default="general_controlnet_v2.0"),
        Field("scale", "float", "How closely to follow the prompt.", default=3.0,
              range=Range(1, 30)),
        Field("ddim_steps", "int", "Sampling steps; high values may time out.", default=16,
              flag="steps", range=Range(1, 50)),
        Field("use_rephraser", "bool", "Let the service expand the prompt.", default=True,
              flag="rephraser"),
        Field("use_sr", "bool", "Super-resolution pass.", default=True, flag="sr",
              panel="Super-resolution"),
        Field("sr_seed", "int", "Super-resolution seed (-1 random).", default=-1,
              range=Range(-1, SEED_MAX), panel="Super-resolution"),
        Field("sr_strength", "float", "Super-resolution strength.", default=0.4, range=Range(0, 1),
              panel="Super-resolution"),
        Field("sr_scale", "float", "Super-resolution text scale.", default=3.5, range=Range(1, 30),
              panel="Super-resolution"),
        Field("sr_steps", "int", "Super-resolution steps.", default=10, range=Range(1, 50),
              panel="Super-resolution"),
        *COMMON,
    ),
)

# fmt: on

KINDS: Final[Mapping[str, Kind]] = {
    kind.command: kind for kind in (TXT2IMG, EDIT, OUTPAINT, PRODUCT_STYLE, CONTROLNET)
}
BY_REQ_KEY: Final[Mapping[str, Kind]] = {kind.req_key: kind for kind in KINDS.values()}

# `call REQ_KEY` builds a body for any other req_key from --set/--body/--image.
CALL = Kind(
    command="call",
    req_key="",
    summary="Call any other req_key with fields from --set and --body.",
    example="volccli call high_aes_general_v21_L --set prompt='a fox' --set width=512",
    slots=(
        ImageSlot(
            "image",
            "Input image (repeatable): path, URL, '-' or data: URI.",
            multiple=True,
            flag="image",
            parse="plain",
        ),
    ),
    fields=(),
)


def kind_for(command_or_req_key: str) -> Kind | None:
    """The table row for a command name or a req_key, if there is one."""
    return KINDS.get(command_or_req_key) or BY_REQ_KEY.get(command_or_req_key)
