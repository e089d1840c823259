"""XMP sidecars: creation for both styles and a merge that never loses foreign content."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from defusedxml.ElementTree import fromstring
from PIL import Image

from aescore.inference.xmp import AESCORE_NS, XMP_NS, SidecarError, sidecar_path, write_rating_sidecar

LIGHTROOM = """<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 7.0-c000 1.000000, 0000/00/00-00:00:00        ">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:tiff="http://ns.adobe.com/tiff/1.0/"
    xmlns:exif="http://ns.adobe.com/exif/1.0/"
    xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/"
    xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/"
    xmlns:stEvt="http://ns.adobe.com/xap/1.0/sType/ResourceEvent#"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
    xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"
   xmp:ModifyDate="2023-05-06T19:11:02+02:00"
   xmp:CreatorTool="Adobe Photoshop Lightroom Classic 12.3 (Windows)"
   xmp:Label="Red"
   tiff:Make="Canon"
   exif:ExposureTime="1/250"
   photoshop:DateCreated="2023-05-06T07:08:09.25"
   xmpMM:DocumentID="xmp.did:1b2c3d4e-aaaa-bbbb-cccc-1234567890ab"
   xmpMM:InstanceID="xmp.iid:1b2c3d4e-aaaa-bbbb-cccc-1234567890ab"
   crs:Version="15.3"
   crs:WhiteBalance="As Shot"
   crs:Exposure2012="+0.35"
   crs:Contrast2012="+12"
   crs:HasSettings="True">
   <xmpMM:History>
    <rdf:Seq>
     <rdf:li
      stEvt:action="saved"
      stEvt:instanceID="xmp.iid:1b2c3d4e-aaaa-bbbb-cccc-1234567890ab"
      stEvt:when="2023-05-06T19:11:02+02:00"
      stEvt:softwareAgent="Adobe Photoshop Lightroom Classic 12.3 (Windows)"
      stEvt:changed="/metadata"/>
    </rdf:Seq>
   </xmpMM:History>
   <dc:subject>
    <rdf:Bag>
     <rdf:li>beach</rdf:li>
     <rdf:li>family &amp; friends</rdf:li>
    </rdf:Bag>
   </dc:subject>
   <lr:hierarchicalSubject>
    <rdf:Bag>
     <rdf:li>places|beach</rdf:li>
    </rdf:Bag>
   </lr:hierarchicalSubject>
   <crs:ToneCurvePV2012>
    <rdf:Seq>
     <rdf:li>0, 0</rdf:li>
     <rdf:li>255, 255</rdf:li>
    </rdf:Seq>
   </crs:ToneCurvePV2012>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""

DARKTABLE = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:exif="http://ns.adobe.com/exif/1.0/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:darktable="http://darktable.sf.net/"
   exif:DateTimeOriginal="2023:05:06 07:08:09"
   xmp:Rating="2"
   xmpMM:DerivedFrom="IMG_1.JPG"
   darktable:import_timestamp="63820000000000000"
   darktable:change_timestamp="63820000100000000"
   darktable:export_timestamp="-1"
   darktable:print_timestamp="-1"
   darktable:xmp_version="5"
   darktable:raw_params="0"
   darktable:auto_presets_applied="1"
   darktable:history_end="2"
   darktable:iop_order_version="4">
   <dc:subject>
    <rdf:Bag>
     <rdf:li>darktable|format|jpg</rdf:li>
    </rdf:Bag>
   </dc:subject>
   <darktable:masks_history>
    <rdf:Seq/>
   </darktable:masks_history>
   <darktable:history>
    <rdf:Seq>
     <rdf:li
      darktable:num="0"
      darktable:operation="colorin"
      darktable:enabled="1"
      darktable:modversion="7"
      darktable:params="gz48eJzjZBgFowABWAYYAwAH4AAJ"
      darktable:multi_name=""
      darktable:multi_priority="0"
      darktable:blendop_version="13"
      darktable:blendop_params="gz11eJxjYIAACQYYOOHEgAZY0QVwggZ7CB6pfOyAEQCTCQYa"/>
     <rdf:li
      darktable:num="1"
      darktable:operation="exposure"
      darktable:enabled="1"
      darktable:modversion="6"
      darktable:params="00000000000080b9"
      darktable:multi_name=""
      darktable:multi_priority="0"/>
    </rdf:Seq>
   </darktable:history>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>&lol3;</dc:title></rdf:Description>
</rdf:RDF></x:xmpmeta>
"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>&xxe;</dc:title></rdf:Description>
</rdf:RDF></x:xmpmeta>
"""


def _facts(xml: bytes | str) -> set[tuple[str, ...]]:
    """Every element (tag + own text) and attribute (with its element) by namespace URI + name + value."""
    root = fromstring(xml, forbid_dtd=True)
    out: set[tuple[str, ...]] = set()
    for elem in root.iter():
        out.add(("element", elem.tag, (elem.text or "").strip()))
        for name, value in elem.attrib.items():
            out.add(("attribute", elem.tag, name, value))
    return out


def _prefixes(xml: bytes | str) -> set[str]:
    text = xml.decode() if isinstance(xml, bytes) else xml
    return {part.split("=")[0] for part in text.split() if part.startswith("xmlns:")}


@pytest.fixture()
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "IMG_1.JPG"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(path)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_sidecar_paths(tmp_path: Path) -> None:
    assert sidecar_path(tmp_path / "IMG_1.JPG", "lightroom") == tmp_path / "IMG_1.xmp"
    assert sidecar_path(tmp_path / "IMG_1.JPG", "darktable") == tmp_path / "IMG_1.JPG.xmp"
    assert sidecar_path(tmp_path / "a.b.CR2", "lightroom") == tmp_path / "a.b.xmp"
    (tmp_path / "IMG_2.XMP").write_text("x")
    assert sidecar_path(tmp_path / "IMG_2.JPG", "lightroom") == tmp_path / "IMG_2.XMP"


@pytest.mark.parametrize("style, name", [("lightroom", "IMG_1.xmp"), ("darktable", "IMG_1.JPG.xmp")])
def test_create_new_sidecar(photo: Path, style: str, name: str) -> None:
    before = _sha(photo)
    change = write_rating_sidecar(photo, 4, 0.73125, style=style, model="ab12cd34")  # type: ignore[arg-type]
    assert change.path == photo.parent / name
    assert (change.action, change.old_rating, change.new_rating, change.changed) == ("create", None, 4, True)
    data = change.path.read_bytes()
    assert data.startswith(b"<?xpacket begin=")
    assert data.rstrip().endswith(b'<?xpacket end="w"?>')
    root = fromstring(data, forbid_dtd=True)
    desc = root.find(".//{http://www.w3.org/1999/02/22-rdf-syntax-ns#}Description")
    assert desc is not None
    assert desc.get(f"{{{XMP_NS}}}Rating") == "4"
    assert desc.get(f"{{{AESCORE_NS}}}Score") == "0.7312"
    assert desc.get(f"{{{AESCORE_NS}}}Model") == "ab12cd34"
    assert b"xmlns:xmp=" in data and b"xmlns:aescore=" in data
    assert _sha(photo) == before
    assert _no_temp_files(photo.parent)
    # a second identical write changes nothing
    again = write_rating_sidecar(photo, 4, 0.73125, style=style, model="ab12cd34")  # type: ignore[arg-type]
    assert (again.action, again.changed) == ("unchanged", False)
    assert change.path.read_bytes() == data


def test_merge_lightroom_keeps_everything(photo: Path) -> None:
    sidecar = photo.parent / "IMG_1.xmp"
    sidecar.write_text(LIGHTROOM, encoding="utf-8")
    before_photo = _sha(photo)
    change = write_rating_sidecar(photo, 5, 0.9, style="lightroom")
    assert (change.action, change.old_rating, change.new_rating) == ("update", None, 5)
    after = sidecar.read_bytes()
    assert _facts(LIGHTROOM) <= _facts(after)
    new = _facts(after) - _facts(LIGHTROOM)
    desc_tag = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}Description"
    assert ("attribute", desc_tag, f"{{{XMP_NS}}}Rating", "5") in new
    assert ("attribute", desc_tag, f"{{{AESCORE_NS}}}Score", "0.9000") in new
    assert _prefixes(LIGHTROOM) <= _prefixes(after)  # original prefixes, not ns0/ns1
    assert b"ns0:" not in after
    assert _sha(photo) == before_photo
    assert _no_temp_files(photo.parent)


def test_merge_darktable_keeps_everything_and_rating(photo: Path) -> None:
    sidecar = photo.parent / "IMG_1.JPG.xmp"
    sidecar.write_text(DARKTABLE, encoding="utf-8")
    change = write_rating_sidecar(photo, 4, 0.61, style="darktable")
    assert (change.action, change.old_rating, change.new_rating, change.changed) == (
        "kept-existing-rating", 2, 2, True,
    )
    after = sidecar.read_bytes()
    assert after.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    facts = _facts(after)
    assert _facts(DARKTABLE) <= facts  # includes xmp:Rating="2" untouched
    assert any(f[:3] == ("attribute", "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}Description", f"{{{AESCORE_NS}}}Score") for f in facts)
    assert _prefixes(DARKTABLE) <= _prefixes(after)
    assert after.count(b"xmp:Rating=") == 1

    # with overwrite: replaced in place (still an attribute), nothing else lost
    change = write_rating_sidecar(photo, 4, 0.61, style="darktable", overwrite_rating=True)
    assert (change.action, change.old_rating, change.new_rating) == ("update", 2, 4)
    after2 = sidecar.read_bytes()
    assert after2.count(b"xmp:Rating=") == 1 and b'xmp:Rating="4"' in after2
    lost = _facts(DARKTABLE) - _facts(after2)
    assert lost == {("attribute", "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}Description", f"{{{XMP_NS}}}Rating", "2")}


def test_rating_as_child_element_updated_in_place(photo: Path) -> None:
    sidecar = photo.parent / "IMG_1.xmp"
    original = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:xap="http://ns.adobe.com/xap/1.0/">'
        "<xap:Rating>1</xap:Rating><!-- keep me --></rdf:Description></rdf:RDF></x:xmpmeta>\n"
        '<?xpacket end="w"?>'
    )
    sidecar.write_text(original, encoding="utf-8")
    kept = write_rating_sidecar(photo, 5, 0.5, style="lightroom", dry_run=True)
    assert (kept.action, kept.old_rating, kept.new_rating) == ("kept-existing-rating", 1, 1)
    assert sidecar.read_text(encoding="utf-8") == original  # dry run: nothing written
    change = write_rating_sidecar(photo, 5, 0.5, style="lightroom", overwrite_rating=True)
    assert (change.action, change.old_rating, change.new_rating) == ("update", 1, 5)
    text = sidecar.read_text(encoding="utf-8")
    assert "<xap:Rating>5</xap:Rating>" in text and "xmp:Rating" not in text
    assert "<!-- keep me -->" in text
    assert text.startswith('<?xpacket begin="\ufeff"') and text.rstrip().endswith('<?xpacket end="w"?>')


def test_same_rating_and_score_is_unchanged(photo: Path) -> None:
    sidecar = photo.parent / "IMG_1.JPG.xmp"
    sidecar.write_text(DARKTABLE, encoding="utf-8")
    write_rating_sidecar(photo, 2, 0.25, style="darktable")
    stat = sidecar.stat()
    change = write_rating_sidecar(photo, 2, 0.25, style="darktable")
    assert (change.action, change.changed, change.new_rating) == ("unchanged", False, 2)
    assert sidecar.stat().st_mtime_ns == stat.st_mtime_ns and sidecar.stat().st_ino == stat.st_ino


@pytest.mark.parametrize("evil", [BILLION_LAUGHS, EXTERNAL_ENTITY, "<not-xml", "<a>no rdf here</a>"])
def test_unsafe_or_invalid_sidecar_refused(photo: Path, evil: str) -> None:
    sidecar = photo.parent / "IMG_1.xmp"
    sidecar.write_text(evil, encoding="utf-8")
    with pytest.raises(SidecarError, match="IMG_1.xmp"):
        write_rating_sidecar(photo, 3, 0.5, style="lightroom", overwrite_rating=True)
    assert sidecar.read_text(encoding="utf-8") == evil
    assert _no_temp_files(photo.parent)


def test_dry_run_writes_nothing(photo: Path) -> None:
    change = write_rating_sidecar(photo, 3, 0.5, style="darktable", dry_run=True)
    assert (change.action, change.changed) == ("create", True)
    assert sorted(p.name for p in photo.parent.iterdir()) == ["IMG_1.JPG"]
    sidecar = photo.parent / "IMG_1.JPG.xmp"
    sidecar.write_text(DARKTABLE, encoding="utf-8")
    change = write_rating_sidecar(photo, 5, 0.5, style="darktable", overwrite_rating=True, dry_run=True)
    assert (change.action, change.old_rating, change.new_rating) == ("update", 2, 5)
    assert sidecar.read_text(encoding="utf-8") == DARKTABLE


def test_symlinked_sidecar_written_through(photo: Path, tmp_path: Path) -> None:
    real = tmp_path / "elsewhere.xmp"
    real.write_text(LIGHTROOM, encoding="utf-8")
    link = photo.parent / "IMG_1.xmp"
    link.symlink_to(real)
    write_rating_sidecar(photo, 3, 0.5, style="lightroom")
    assert link.is_symlink()
    assert b"aescore:Score" in real.read_bytes()


def test_bad_arguments(photo: Path) -> None:
    with pytest.raises(ValueError):
        write_rating_sidecar(photo, 6, 0.5)
    with pytest.raises(ValueError):
        write_rating_sidecar(photo, 3, float("nan"))
    assert sorted(p.name for p in photo.parent.iterdir()) == ["IMG_1.JPG"]


# --------------------------------------------------------------------------- hardening (issue 15)


def _in_thread(fn: object, timeout: float = 10.0) -> object:
    """Run ``fn()`` in a daemon thread; its result or exception, or fail if it is still blocked."""
    import threading

    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = fn()  # type: ignore[operator]
        except BaseException as err:  # noqa: BLE001 - handed back to the test
            box["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "blocked reading the sidecar"
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box.get("value")


def test_fifo_sidecar_is_refused_without_blocking(photo: Path) -> None:
    import os

    sidecar = photo.parent / "IMG_1.xmp"
    os.mkfifo(sidecar)
    with pytest.raises(SidecarError, match="not a regular file"):
        _in_thread(lambda: write_rating_sidecar(photo, 3, 0.5, style="lightroom"))
    assert _no_temp_files(photo.parent)


def test_device_sidecar_is_refused(photo: Path) -> None:
    (photo.parent / "IMG_1.xmp").symlink_to("/dev/zero")
    with pytest.raises(SidecarError, match="not a regular file"):
        _in_thread(lambda: write_rating_sidecar(photo, 3, 0.5, style="lightroom"))


def test_huge_sidecar_is_refused_unread(photo: Path) -> None:
    from aescore.inference.xmp import MAX_SIDECAR_BYTES

    sidecar = photo.parent / "IMG_1.xmp"
    with open(sidecar, "wb") as fh:  # sparse: no disk space used
        fh.truncate(MAX_SIDECAR_BYTES + 1)
    with pytest.raises(SidecarError, match="larger than 16 MB"):
        write_rating_sidecar(photo, 3, 0.5, style="lightroom")
    assert sidecar.stat().st_size == MAX_SIDECAR_BYTES + 1


WHITESPACE = """<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
   photoshop:Headline="Tab&#9;and&#10;newline&#13;and CR, &quot;quoted&quot; &amp; &lt;tagged&gt;">
   <photoshop:Instructions>element&#9;tab&#10;line&#13;carriage&#13;&#10;crlf</photoshop:Instructions>
   <dc:description>
    <rdf:Alt>
     <rdf:li xml:lang="x-default" photoshop:Note="a&#13;b">first line&#13;carriage</rdf:li>
    </rdf:Alt>
   </dc:description>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


def test_merge_keeps_tab_lf_and_cr_values_exact(photo: Path) -> None:
    sidecar = photo.parent / "IMG_1.xmp"
    sidecar.write_text(WHITESPACE, encoding="utf-8", newline="")
    before = _facts(WHITESPACE)
    write_rating_sidecar(photo, 4, 0.75, style="lightroom")
    after_bytes = sidecar.read_bytes()
    after = _facts(after_bytes)
    assert before - after == set()  # every foreign value reads the same through a parser

    root = fromstring(after_bytes, forbid_dtd=True)
    ps = "{http://ns.adobe.com/photoshop/1.0/}"
    desc = root.find(".//{http://www.w3.org/1999/02/22-rdf-syntax-ns#}Description")
    assert desc is not None
    assert desc.attrib[ps + "Headline"] == 'Tab\tand\nnewline\rand CR, "quoted" & <tagged>'
    assert root.find(f".//{ps}Instructions").text == "element\ttab\nline\rcarriage\r\ncrlf"  # type: ignore[union-attr]
    li = root.find(".//{http://www.w3.org/1999/02/22-rdf-syntax-ns#}li")
    assert li is not None and li.text == "first line\rcarriage" and li.attrib[ps + "Note"] == "a\rb"
    # and the second run changes nothing
    assert write_rating_sidecar(photo, 4, 0.75, style="lightroom").action == "unchanged"
    assert sidecar.read_bytes() == after_bytes


def test_existing_sidecars_are_written_byte_for_byte_as_before(photo: Path) -> None:
    # The new writer only adds character references; plain content comes out as minidom wrote it.
    from xml.dom import minidom

    from aescore.inference.xmp import _serialise

    for text in (LIGHTROOM, DARKTABLE):
        doc = minidom.parseString(text.encode())
        expected = "\n".join(node.toxml() for node in doc.childNodes) + "\n"
        assert _serialise(doc, False).decode() == expected


def test_shared_lightroom_sidecar_goes_to_one_photo(tmp_path: Path) -> None:
    from aescore.inference.xmp import check_sidecar_collisions

    for name in ("pair.png", "pair.jpg", "solo.jpg", "raw.JPG", "raw.CR2"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "pair.txt").write_text("not a photo")
    photos = [tmp_path / "pair.png", tmp_path / "solo.jpg", tmp_path / "pair.jpg", tmp_path / "raw.JPG"]
    plan = check_sidecar_collisions(photos, "lightroom")
    assert [c is None for c in plan] == [False, True, True, False]
    assert plan[0] is not None and plan[0].owner == tmp_path / "pair.jpg" and plan[0].sidecar.name == "pair.xmp"
    assert "pair.jpg" in str(plan[0]) and "pair.png" in str(plan[0])
    # the RAW owns its sidecar even when the run writes only the JPEG
    assert plan[3] is not None and plan[3].owner == tmp_path / "raw.CR2"
    # stable: the same owner whatever the order and selection
    assert check_sidecar_collisions(list(reversed(photos)), "lightroom")[::-1] == plan
    assert check_sidecar_collisions([tmp_path / "pair.png"], "lightroom")[0] == plan[0]
    # darktable names never collide
    assert check_sidecar_collisions(photos, "darktable") == [None] * 4
    with pytest.raises(Exception, match="unknown XMP sidecar style"):
        check_sidecar_collisions(photos, "picasa")  # type: ignore[arg-type]
