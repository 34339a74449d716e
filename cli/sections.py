"""The design document's section titles, for the section numbers the model's steps cite.

The document (``../shared/seeds/000_31b525e9523b83a6.txt``) numbers the same sections twice: once in each
manager's part (VRAM管理器改进 and GTT管理器改进 share their titles) and again in 并发保护机制.  A step
cites a bare number (``3.3``, ``5.1 / 2.2``), which the model means in the manager's part except in three
places, resolved here by what the step does rather than by editing the model's section strings (traces
carry them):

* ``2.2 (READY -> SHUTDOWN)`` (fini): 并发保护机制 2.2 状态转换, where that transition is drawn;
* ``4.x`` on an alloc step: 并发保护机制 4.x (4.2 状态重试); alloc's own part is 3, and the manager's 4 is free;
* ``2.1`` on a statistics update (atomic64): 并发保护机制 2.1 原子操作 (使用 atomic64_t 管理统计信息).

Every title is copied from the document's headings.
"""
from __future__ import annotations

import re

MANAGER = {
    "1": "状态管理", "1.1": "状态标志", "1.2": "状态检查函数",
    "2": "错误处理机制", "2.1": "错误状态设置", "2.2": "错误状态清除",
    "3": "分配函数改进", "3.1": "设备状态检查", "3.2": "管理器状态检查", "3.3": "重试机制",
    "4": "释放函数改进", "4.1": "状态检查", "4.2": "锁内状态检查",
    "5": "恢复机制", "5.1": "管理器恢复函数",
    "6": "统计信息", "6.1": "统计结构", "6.2": "统计获取函数",
}
CONCURRENCY_PART = "并发保护机制"
CONCURRENCY = {
    "1": "锁机制", "1.1": "VRAM管理器锁", "1.2": "GTT管理器锁",
    "2": "状态管理", "2.1": "原子操作", "2.2": "状态转换",
    "3": "错误处理", "3.1": "错误检测", "3.2": "错误恢复",
    "4": "重试机制", "4.1": "分配重试", "4.2": "状态重试",
}
PART = {"vram": "VRAM管理器改进", "gtt": "GTT管理器改进"}

_NUMBER = re.compile(r"\s*(并发保护机制\s*)?(\d+(?:\.\d+)?)(.*)")


def titles(section: str, kind: str = "vram", label: str = "", code: str = "") -> list[str]:
    """``"5.1 / 2.2"`` -> ``["VRAM管理器改进 5.1 管理器恢复函数", "VRAM管理器改进 2.2 错误状态清除"]``:
    each number the section cites, with its part and title; parts that are no number (``(fini)``, the
    document shows no fini) are left out."""
    out = []
    for part in str(section or "").split("/"):
        m = _NUMBER.fullmatch(part)
        if not m:
            continue
        prefixed, num, rest = m.groups()
        concurrent = bool(prefixed) or "READY -> SHUTDOWN" in rest \
            or (num.startswith("4") and ".alloc." in label) \
            or (num == "2.1" and "atomic64" in code)
        if not concurrent and rest.strip() and rest.strip().split()[0] == CONCURRENCY.get(num):
            concurrent = True              # "3.1 错误检测" names a 并发保护机制 title
        table, where = (CONCURRENCY, CONCURRENCY_PART) if concurrent else (MANAGER, PART.get(kind, PART["vram"]))
        if num in table:
            out.append(f"{where} {num} {table[num]}")
    return out
