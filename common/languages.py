"""Language tags of text tracks: BCP 47 checked against ISO 639, and the codes containers want.

A tag is a primary language subtag (ISO 639-1 two letters, or an ISO 639-2/T three-letter code
of a language in the table, or "und"), then optional script (Latn), region (BR, 419) and
variant subtags (RFC 5646 syntax). The primary subtag must be a language of the table: a typo
("fre-CA" aside, which ISO 639-2/B spells and is accepted) is refused rather than carried into
a playlist. MP4 and Matroska store ISO 639-2 three-letter codes, so every language of the table
has one; HLS LANGUAGE and DASH @lang take the tag itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# ISO 639-1 code, ISO 639-2/T code, English name: every two-letter language.
_TABLE = """
aa aar Afar|ab abk Abkhazian|ae ave Avestan|af afr Afrikaans|ak aka Akan|am amh Amharic
an arg Aragonese|ar ara Arabic|as asm Assamese|av ava Avaric|ay aym Aymara|az aze Azerbaijani
ba bak Bashkir|be bel Belarusian|bg bul Bulgarian|bi bis Bislama|bm bam Bambara|bn ben Bengali
bo bod Tibetan|br bre Breton|bs bos Bosnian|ca cat Catalan|ce che Chechen|ch cha Chamorro
co cos Corsican|cr cre Cree|cs ces Czech|cu chu Church Slavic|cv chv Chuvash|cy cym Welsh
da dan Danish|de deu German|dv div Dhivehi|dz dzo Dzongkha|ee ewe Ewe|el ell Greek
en eng English|eo epo Esperanto|es spa Spanish|et est Estonian|eu eus Basque|fa fas Persian
ff ful Fulah|fi fin Finnish|fj fij Fijian|fo fao Faroese|fr fra French|fy fry Western Frisian
ga gle Irish|gd gla Scottish Gaelic|gl glg Galician|gn grn Guarani|gu guj Gujarati|gv glv Manx
ha hau Hausa|he heb Hebrew|hi hin Hindi|ho hmo Hiri Motu|hr hrv Croatian|ht hat Haitian
hu hun Hungarian|hy hye Armenian|hz her Herero|ia ina Interlingua|id ind Indonesian
ie ile Interlingue|ig ibo Igbo|ii iii Sichuan Yi|ik ipk Inupiaq|io ido Ido|is isl Icelandic
it ita Italian|iu iku Inuktitut|ja jpn Japanese|jv jav Javanese|ka kat Georgian|kg kon Kongo
ki kik Kikuyu|kj kua Kuanyama|kk kaz Kazakh|kl kal Kalaallisut|km khm Khmer|kn kan Kannada
ko kor Korean|kr kau Kanuri|ks kas Kashmiri|ku kur Kurdish|kv kom Komi|kw cor Cornish
ky kir Kyrgyz|la lat Latin|lb ltz Luxembourgish|lg lug Ganda|li lim Limburgish|ln lin Lingala
lo lao Lao|lt lit Lithuanian|lu lub Luba-Katanga|lv lav Latvian|mg mlg Malagasy
mh mah Marshallese|mi mri Maori|mk mkd Macedonian|ml mal Malayalam|mn mon Mongolian
mr mar Marathi|ms msa Malay|mt mlt Maltese|my mya Burmese|na nau Nauru|nb nob Norwegian Bokmål
nd nde North Ndebele|ne nep Nepali|ng ndo Ndonga|nl nld Dutch|nn nno Norwegian Nynorsk
no nor Norwegian|nr nbl South Ndebele|nv nav Navajo|ny nya Chichewa|oc oci Occitan
oj oji Ojibwa|om orm Oromo|or ori Oriya|os oss Ossetian|pa pan Punjabi|pi pli Pali|pl pol Polish
ps pus Pashto|pt por Portuguese|qu que Quechua|rm roh Romansh|rn run Rundi|ro ron Romanian
ru rus Russian|rw kin Kinyarwanda|sa san Sanskrit|sc srd Sardinian|sd snd Sindhi
se sme Northern Sami|sg sag Sango|si sin Sinhala|sk slk Slovak|sl slv Slovenian|sm smo Samoan
sn sna Shona|so som Somali|sq sqi Albanian|sr srp Serbian|ss ssw Swati|st sot Southern Sotho
su sun Sundanese|sv swe Swedish|sw swa Swahili|ta tam Tamil|te tel Telugu|tg tgk Tajik|th tha Thai
ti tir Tigrinya|tk tuk Turkmen|tl tgl Tagalog|tn tsn Tswana|to ton Tongan|tr tur Turkish
ts tso Tsonga|tt tat Tatar|tw twi Twi|ty tah Tahitian|ug uig Uyghur|uk ukr Ukrainian|ur urd Urdu
uz uzb Uzbek|ve ven Venda|vi vie Vietnamese|vo vol Volapük|wa wln Walloon|wo wol Wolof
xh xho Xhosa|yi yid Yiddish|yo yor Yoruba|za zha Zhuang|zh zho Chinese|zu zul Zulu
"""
# ISO 639-2/B spellings (what older MP4 and Matroska files carry) of the languages above.
_BIBLIOGRAPHIC = {
    "alb": "sqi",
    "arm": "hye",
    "baq": "eus",
    "bur": "mya",
    "chi": "zho",
    "cze": "ces",
    "dut": "nld",
    "fre": "fra",
    "geo": "kat",
    "ger": "deu",
    "gre": "ell",
    "ice": "isl",
    "mac": "mkd",
    "mao": "mri",
    "may": "msa",
    "per": "fas",
    "rum": "ron",
    "slo": "slk",
    "tib": "bod",
    "wel": "cym",
}
_TERMINOLOGY_TO_BIBLIOGRAPHIC = {t: b for b, t in _BIBLIOGRAPHIC.items()}
UNDETERMINED = "und"


@dataclass(frozen=True)
class Language:
    # ISO 639-2/T, what MP4 and Matroska store.
    iso639_2: str
    english_name: str

    @property
    def iso639_2_bibliographic(self) -> str:
        """The ISO 639-2/B spelling ("ger" for "deu"): what FFmpeg's MOV muxer maps to
        QuickTime's language codes (it knows no /T spelling that differs)."""
        return _TERMINOLOGY_TO_BIBLIOGRAPHIC.get(self.iso639_2, self.iso639_2)


def _rows() -> dict[str, Language]:
    rows: dict[str, Language] = {}
    for entry in _TABLE.replace("\n", "|").split("|"):
        if entry.strip():
            two, three, name = entry.split(" ", 2)
            rows[two] = rows[three] = Language(three, name)
    for bibliographic, terminology in _BIBLIOGRAPHIC.items():
        rows[bibliographic] = rows[terminology]
    rows[UNDETERMINED] = Language(UNDETERMINED, "Undetermined")
    return rows


LANGUAGES = _rows()
MAX_TAG = 35
# RFC 5646 after the primary subtag: script, region, variants (extensions are not taken).
_SUBTAGS = re.compile(
    r"(?:-[A-Za-z]{4})?(?:-(?:[A-Za-z]{2}|[0-9]{3}))?(?:-(?:[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*"
)


def language_problem(tag: str) -> str | None:
    """Why `tag` is not a language tag this service knows; None when it is."""
    if not tag:
        return "is required (a BCP 47 tag such as fr, es-419 or pt-BR)"
    if len(tag) > MAX_TAG:
        return f"at most {MAX_TAG} characters"
    primary, _, rest = tag.partition("-")
    if primary.lower() not in LANGUAGES:
        return f"{tag!r} is not a known language: start with an ISO 639 code such as fr or fra"
    if rest and not _SUBTAGS.fullmatch(f"-{rest}"):
        return f"{tag!r} is not a BCP 47 tag: language, then script, region and variants"
    return None


def language_of(tag: str) -> Language:
    """The table's row for a valid tag's primary language."""
    return LANGUAGES[tag.partition("-")[0].lower()]


def same_language(stream_tag: str, tag: str) -> bool:
    """Whether a container's language tag ("fre", "fra", "fr") names the language of `tag`."""
    stream = LANGUAGES.get(stream_tag.partition("-")[0].lower())
    wanted = LANGUAGES.get(tag.partition("-")[0].lower())
    return stream is not None and wanted is not None and stream.iso639_2 == wanted.iso639_2
