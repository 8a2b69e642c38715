"""Labelled image sets (omnizoo.data.labelled): the four layouts, subsets, the split, and
hostile inputs refused with one clear error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from omnizoo.data import labelled, labelled_files
from omnizoo.data.label_match import match_classes, model_synsets, read_class_map
from omnizoo.data.labelled import read_labelled, split_labelled
from omnizoo.data.labels import load_label_set
from omnizoo.errors import ConfigurationError, MetadataError


def _touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def test_folder_tree_is_torchvision_order(tmp_path: Path) -> None:
    _touch(
        tmp_path, "b/2.JPG", "b/1.png", "a/sub/3.webp", "a/0.jpeg", "a/notes.txt", ".hidden/x.jpg"
    )
    data = read_labelled(tmp_path)
    assert data.classes == ("a", "b")
    assert [(i.path.relative_to(tmp_path).as_posix(), i.label) for i in data.items] == [
        ("a/0.jpeg", "a"),
        ("a/sub/3.webp", "a"),
        ("b/1.png", "b"),
        ("b/2.JPG", "b"),
    ]


def test_limit_spreads_over_classes_and_classes_filter(tmp_path: Path) -> None:
    _touch(
        tmp_path, *(f"a/{i}.jpg" for i in range(5)), "b/0.jpg", *(f"c/{i}.jpg" for i in range(3))
    )
    picked = read_labelled(tmp_path, limit=5)
    assert sorted(i.label for i in picked.items) == ["a", "a", "b", "c", "c"]
    assert read_labelled(tmp_path, limit=5) == picked  # deterministic
    only = read_labelled(tmp_path, classes=["c", "b"])
    assert only.classes == ("b", "c") and len(only) == 4
    with pytest.raises(ConfigurationError, match="no class 'zebra'"):
        read_labelled(tmp_path, classes=["zebra"])


def test_csv_and_jsonl(tmp_path: Path) -> None:
    _touch(tmp_path, "img/1.jpg", "img/2.jpg")
    (tmp_path / "l.csv").write_text('path,label\nimg/1.jpg,cat\n"img/2.jpg","dog, big"\n')
    data = read_labelled(tmp_path / "l.csv")
    assert [(i.path, i.label) for i in data.items] == [
        (tmp_path / "img/1.jpg", "cat"),
        (tmp_path / "img/2.jpg", "dog, big"),
    ]
    (tmp_path / "l.jsonl").write_text(
        '{"path": "img/1.jpg", "label": 281}\n\n{"path": "img/2.jpg", "label": "x"}\n'
    )
    assert [i.label for i in read_labelled(tmp_path / "l.jsonl").items] == ["281", "x"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("file,class\na.jpg,x\n", "l.csv line 1: the header"),
        ("path,label\na.jpg,x,y\n", "l.csv line 2: 3 fields"),
        ("path,label\na.jpg,x\nb.jpg,\n", "l.csv line 3: label ''"),
        ("path,label\n../../etc/passwd,x\n", "leads outside"),
        ("path,label\na.jpg,x\n./a.jpg,y\n", "listed again \\(first on line 2\\)"),
    ],
)
def test_bad_csv_rows_name_file_and_line(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "l.csv").write_text(text)
    with pytest.raises(MetadataError, match=match):
        read_labelled(tmp_path / "l.csv")


def test_bad_jsonl_row(tmp_path: Path) -> None:
    (tmp_path / "l.jsonl").write_text(
        '{"path": "a.jpg", "label": "x"}\n{"path": 3, "label": "y"}\n'
    )
    with pytest.raises(MetadataError, match=r"l\.jsonl line 2: field 'path'"):
        read_labelled(tmp_path / "l.jsonl")


def test_huge_list_refused_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.csv"
    with big.open("wb") as fh:  # sparse: nothing is written, nothing must be read
        fh.truncate(labelled_files.MAX_LIST_BYTES + 1)
    with pytest.raises(MetadataError, match="larger than"):
        read_labelled(big)


def test_symlink_out_of_root_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"x")
    _touch(tmp_path / "data", "cat/1.jpg")
    os.symlink(outside, tmp_path / "data" / "cat" / "2.jpg")
    with pytest.raises(ConfigurationError, match="leads outside"):
        read_labelled(tmp_path / "data")
    os.symlink(tmp_path, tmp_path / "data" / "dog")  # a class folder that is a link out
    (tmp_path / "data" / "cat" / "2.jpg").unlink()
    with pytest.raises(ConfigurationError, match="leads outside"):
        read_labelled(tmp_path / "data")


def test_empty_and_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no labelled images"):
        read_labelled(tmp_path)
    with pytest.raises(ConfigurationError, match="no such file or folder"):
        read_labelled(tmp_path / "nope")


def _val(tmp_path: Path) -> Path:
    folder = tmp_path / "val"
    _touch(folder, *(f"ILSVRC2012_val_{i:08d}.JPEG" for i in (1, 2, 3)))
    return folder


def test_imagenet_val_layouts(tmp_path: Path) -> None:
    folder = _val(tmp_path)
    loc = tmp_path / "LOC_val_solution.csv"
    loc.write_text(
        "ImageId,PredictionString\nILSVRC2012_val_00000002,n01440764 1 2 3 4 n01440764 5 6 7 8\n"
        "ILSVRC2012_val_00000001,n01443537 1 2 3 4\nILSVRC2012_val_00000003,n01440764 1 1 1 1\n"
        "ILSVRC2012_val_00000009,n01443537 1 1 1 1\n"  # an image not copied: ignored
    )
    data = read_labelled(folder, ground_truth=loc)
    assert [i.label for i in data.items] == ["n01443537", "n01440764", "n01440764"]
    devkit = tmp_path / "devkit"
    devkit.mkdir()
    (devkit / "ILSVRC2012_validation_ground_truth.txt").write_text("65\n449\n449\n")
    (devkit / "map_clsloc.txt").write_text("n01440764 449 tench\nn01751748 65 sea_snake\n")
    data = read_labelled(folder, ground_truth=devkit / "ILSVRC2012_validation_ground_truth.txt")
    assert [i.label for i in data.items] == ["n01751748", "n01440764", "n01440764"]
    caffe = tmp_path / "val.txt"
    caffe.write_text(
        "ILSVRC2012_val_00000001.JPEG 65\nILSVRC2012_val_00000002.JPEG 0\n"
        "ILSVRC2012_val_00000003.JPEG 0\n"
    )
    assert [i.label for i in read_labelled(folder, ground_truth=caffe).items] == ["65", "0", "0"]
    (devkit / "map_clsloc.txt").unlink()
    with pytest.raises(ConfigurationError, match=r"meta\.mat"):
        read_labelled(folder, ground_truth=devkit / "ILSVRC2012_validation_ground_truth.txt")
    (devkit / "bad.txt").write_text("65\nabc\n")
    with pytest.raises(MetadataError, match=r"bad\.txt line 2"):
        read_labelled(folder, ground_truth=devkit / "bad.txt")


def test_split_is_stratified_and_seeded(tmp_path: Path) -> None:
    _touch(
        tmp_path, *(f"a/{i}.jpg" for i in range(10)), *(f"b/{i}.jpg" for i in range(4)), "c/0.jpg"
    )
    data = read_labelled(tmp_path)
    train, val = split_labelled(data, 0.3, seed=3)
    assert sorted(i.label for i in val.items) == ["a", "a", "a", "b"]  # c: one image, in train
    assert len(train) + len(val) == len(data) and not set(train.items) & set(val.items)
    assert train.classes == val.classes == data.classes
    assert split_labelled(data, 0.3, seed=3) == (train, val)
    assert split_labelled(data, 0.3, seed=4) != (train, val)
    with pytest.raises(ConfigurationError):
        split_labelled(data, 1.0, seed=0)


def test_class_matching_by_synset_name_alias_and_index(tmp_path: Path) -> None:
    labels = load_label_set("imagenet-1k")
    synsets = model_synsets(labels, "imagenet-1k")
    assert synsets is not None and synsets[:2] == ["n01440764", "n01443537"]
    assert match_classes(
        ["n01440764", "Tiger_Cat", "281", "tench, Tinca tinca"], labels, synsets=synsets
    ) == (0, 282, 281, 0)
    assert match_classes(["1"], ["background", *labels]) == (2,)  # indices count named classes
    with pytest.raises(ConfigurationError) as err:
        match_classes(
            [f"thing{i}" for i in range(25)] + ["tench"], labels, synsets=synsets, model="m"
        )
    message = str(err.value)
    assert "25 of 26 data set classes match no label of m" in message
    assert "'thing19'" in message and "'thing20'" not in message and "(and 5 more)" in message
    assert "--class-map" in message
    with pytest.raises(
        ConfigurationError, match="ambiguous: 'a' names outputs 0 \\(A\\), 1 \\(a\\)"
    ):
        match_classes(["a"], ["A", "a"])
    cmap = tmp_path / "map.csv"
    cmap.write_text("dataset_class,model_label\nkitty,tabby\nfish,n01440764\n")
    mapping = read_class_map(cmap)
    assert match_classes(["fish", "kitty"], labels, synsets=synsets, class_map=mapping) == (0, 281)
    cmap.write_text("dataset_class,model_label\nkitty,tabby\nkitty,tench\n")
    with pytest.raises(MetadataError, match=r"map\.csv line 3"):
        read_class_map(cmap)


def test_module_constants_are_torchvisions() -> None:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    assert set(labelled.IMG_EXTENSIONS) == set(IMG_EXTENSIONS)
