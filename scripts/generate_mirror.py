#!/usr/bin/env python3
"""Generate a synthetic mirror of any size, written through the mirror's own store.

    .venv/bin/python scripts/generate_mirror.py --patches 1000000 \\
        --out /path/mirror.sqlite3 [--seed 1] [--force]

The file is opened with ``mirror.schema.connect`` and every object goes
through ``mirror.store.write`` in batches (one transaction each), in the
normalised shape the sync stores (see ``mirror/resources.py``).  At the end
the meta values of a completed crawl are set (``sync.state``, the event
cursor...), so ``patchwork-gateway serve`` serves it as a normal mirror.

Proportions at N patches, all scaled with N: six projects of skewed sizes
(one holds half), about N/40 people with a Zipf-like skew of submitters,
200 users (CI bots, maintainers who are delegates, contributors), about
N/3 series of 1 to 15 patches (mostly 1 to 5), a cover letter for about a
third of them, states skewed as on a busy instance, about 70 % archived,
a delegate on about 30 %, about N/2 patch comments (most patches have
none), cover comments on about half the covers, about N checks (0 to 5
per patch), the events Patchwork emits for all of that, and up to 500
bundles.  Dates span ten years (more traffic in later years); in every
table, ids increase with dates.  The output is the same for a seed.

Other scripts may ``from scripts.generate_mirror import generate`` (or put
``scripts`` on ``sys.path``) and ``await generate(path, patches, seed)``.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import heapq
import itertools
import math
import random
import sys
import time
from array import array
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mirror import schema, store  # noqa: E402
from mirror.resources import RESOURCES  # noqa: E402
from mirror.store import Batch  # noqa: E402
from sync.events import CURSOR  # noqa: E402

#: The upstream the mirror pretends to hold (``upstream.url`` meta).
ORIGIN = "https://patchwork.example.org"

START = datetime(2015, 7, 1, tzinfo=UTC).timestamp()
END = datetime(2025, 7, 1, tzinfo=UTC).timestamp()
SPAN = END - START
DAY = 86400.0
_EPOCH = datetime(1970, 1, 1)

USERS = 200
CI_BOTS = 10  # users 1..10
MAINTAINERS = 50  # users 11..60; the rest are contributors
MAX_BUNDLES = 500

# -- word lists -------------------------------------------------------------


def words(text: str, sep: str | None = None) -> tuple[str, ...]:
    return tuple(text.split(sep))


FIRST = words(
    "Alexander Alexei Alice Andrea Andrew Andy Anna Arnd Ben Bjorn Boris Brian Carlos Chen "
    "Chris Christoph Claudio Daniel Dan Dave David Dmitry Eric Emil Florian Frank Geert Greg "
    "Guenter Hans Heiko Herbert Ilya Ingo Jakub Jan Jason Jens Jeff Jiri Joe Johan John "
    "Jonathan Josef Julia Kees Keith Krzysztof Lars Laurent Leon Linus Lorenzo Luis Maciej "
    "Marc Marek Mark Martin Matthew Maxime Michael Miguel Mika Nathan Neil Nicolas Oleksij "
    "Pablo Paolo Paul Pavel Peter Petr Philipp Rafael Ricardo Rob Russell Ryan Sakari Sasha "
    "Sean Sebastian Simon Stefan Stephen Steven Takashi Thomas Tony Uwe Vinod Vlastimil Wei "
    "Will Xin Yang Yu Zhang Zi Jörg José Zoë Łukasz Søren Håkon François Ivan Olga Priya "
    "Ravi Sunil Hiroshi Kenji Min-jun Seo-yeon Wen Li Mei Tomasz Gergely Ana Ines Noor"
)
LAST = words(
    "Torvalds Kroah-Hartman Miller Kicinski Abeni Dumazet Morton Hocko Axboe Viro Brauner "
    "Hellwig Tso Wong Sterba Bacik Ingo Molnar Zijlstra Gleixner Petkov Hansen Bonzini "
    "Christopherson Zyngier Deacon Marinas Bergmann Kozlowski Herring Wysocki Lunn Fainelli "
    "Vetter Airlie Deucher Wilson Vivi Nikula Iwai Brown Mack Cameron Kumar Singh Sharma Gupta "
    "Wang Li Zhang Liu Chen Yang Huang Zhao Wu Zhou Xu Sun Ma Zhu Hu Guo Lin He Gao Luo Tanaka "
    "Suzuki Sato Watanabe Ito Kim Lee Park Choi Jung Kang Cho Yoon Jang Nowak Kowalski Novak "
    "Horvath Nagy Muller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann "
    "Rossi Russo Ferrari Esposito Bianchi Romano Garcia Martinez Lopez Gonzalez Rodriguez "
    "Fernandez Sanchez Perez Silva Santos Oliveira Souza Dubois Lefebvre Moreau Laurent Simon "
    "Michel Ivanov Smirnov Kuznetsov Popov Petrov Jansen Bakker Visser Smit Nielsen Jensen "
    "Hansen Larsen Andersson Johansson Karlsson Nilsson Eriksson Virtanen Korhonen Murphy Kelly"
)
DOMAINS = words(
    "intel.com redhat.com google.com linaro.org kernel.org suse.de suse.com arm.com nvidia.com "
    "amd.com huawei.com gmail.com oracle.com linux.ibm.com meta.com microsoft.com collabora.com "
    "bootlin.com linutronix.de samsung.com quicinc.com broadcom.com marvell.com nxp.com "
    "ti.com rock-chips.com mediatek.com canonical.com debian.org gmx.de yandex.ru qq.com 163.com "
    "outlook.com pengutronix.de igalia.com fb.com alibaba.com bytedance.com"
)

VERBS = words(
    "fix add remove use convert avoid drop introduce support refactor simplify handle check "
    "update switch move rework enable disable document implement initialize validate "
    "restore prevent correct expose export annotate limit"
)
OBJECTS = words(
    "memory leak|null pointer dereference|race condition|use-after-free|error handling|"
    "missing lock|reference count|buffer overflow|timeout handling|debugfs entries|"
    "unused variable|return value|DMA mapping|IRQ handler|runtime PM|sysfs attribute|"
    "selftests|kernel-doc comments|integer overflow|off-by-one|deadlock|RCU usage|"
    "endianness|statistics|module parameter|error path|cleanup helpers|device tree binding|"
    "firmware loading|clock handling|reset sequence|power domain|interrupt storm|"
    "link state|queue mapping|page pool|checksum offload|VLAN filtering|XDP support|"
    "hardware timestamping|GSO handling|tracepoints|compiler warning|sparse warnings|"
    "uninitialized variable|stack usage|locking order|suspend path|probe deferral",
    "|",
)
CONDITIONS = words(
    "the device is removed|probe fails|allocation fails|the link goes down|running under KASAN|"
    "CONFIG_PM is disabled|the queue is full|called from atomic context|the firmware is missing|"
    "the buffer is empty|unbinding the driver|resuming from suspend|using 32-bit builds",
    "|",
)
FUNCS = words(
    "probe remove open close xmit init exit reset suspend resume poll irq_handler get_stats "
    "set_rx_mode setup_tc alloc_rings free_rings read write ioctl mmap flush submit complete "
    "start stop configure attach detach register unregister update_link handle_event"
)
COMPONENTS = words(
    "ice mlx5 i915 amdgpu nouveau stmmac r8169 bnxt ath11k ath12k iwlwifi hns3 qcom imx "
    "rockchip sunxi tegra exynos meson mediatek renesas core ipv4 ipv6 tcp udp netfilter "
    "xdp verifier libbpf page_alloc slub vmscan hugetlb memcg io_uring fuse cifs overlayfs "
    "zram ufs dwc3 xhci typec ti omap sdhci spi-nor nand virtio_net vhost mptcp sctp"
)

KERNEL_SUBSYSTEMS = words(
    "mm fs sched usb iio arm64 x86 kvm btrfs ext4 xfs nfs scsi block pci gpio i2c spi mmc "
    "media ASoC crypto selftests perf tracing rcu cgroup HID Input thermal power clk "
    "dt-bindings firmware iommu vfio virtio nvme RDMA drm arm64 riscv powerpc s390"
)
NET_SUBSYSTEMS = words(
    "net bpf net/mlx5 ice igb igc ixgbe bnxt_en tcp ipv6 netfilter wifi Bluetooth can "
    "selftests/bpf libbpf bpftool xsk mptcp sctp tipc bridge bonding vxlan geneve"
)
QEMU_SUBSYSTEMS = words(
    "target/arm target/riscv target/i386 target/ppc hw/arm hw/riscv hw/nvme hw/net hw/usb "
    "block migration tcg accel/kvm ui qapi tests/qtest linux-user docs hw/i386 util "
    "vfio virtio-net hw/cxl monitor"
)
UBOOT_SUBSYSTEMS = words(
    "arm dm board env fdt mmc net usb spi video clk power cmd boot efi_loader test "
    "configs rockchip sunxi imx8m stm32mp"
)
DPDK_SUBSYSTEMS = words(
    "net/mlx5 net/ice net/i40e net/ixgbe net/iavf net/bnxt net/virtio ethdev mbuf mempool "
    "eal app/testpmd examples doc crypto/qat vhost common/cnxk ring hash"
)
PATCHWORK_SUBSYSTEMS = words(
    "api parser models views docs tests templates migrations xmlrpc filters "
    "requirements CI management"
)

#: name, link name, list id, share of patches, subsystems, CI contexts,
#: lore-style archive, show_dependencies.
PROJECTS: tuple[tuple[str, str, str, float, tuple[str, ...], tuple[str, ...], bool, bool], ...] = (
    (
        "Linux Kernel",
        "linux-kernel",
        "linux-kernel.vger.kernel.org",
        0.50,
        tuple(KERNEL_SUBSYSTEMS),
        ("checkpatch", "build", "test", "build_clang", "kdoc", "sparse", "coccinelle"),
        True,
        False,
    ),
    (
        "Netdev + BPF",
        "netdevbpf",
        "netdev.vger.kernel.org",
        0.18,
        tuple(NET_SUBSYSTEMS),
        ("checkpatch", "build_32bit", "build_allmodconfig_warn", "test", "kdoc", "cc_maintainers"),
        True,
        False,
    ),
    (
        "QEMU Development",
        "qemu-devel",
        "qemu-devel.nongnu.org",
        0.12,
        tuple(QEMU_SUBSYSTEMS),
        ("checkpatch", "build", "test", "docker-quick"),
        True,
        False,
    ),
    (
        "U-Boot",
        "uboot",
        "u-boot.lists.denx.de",
        0.10,
        tuple(UBOOT_SUBSYSTEMS),
        ("checkpatch", "build", "test"),
        True,
        False,
    ),
    (
        "DPDK",
        "dpdk",
        "dev.dpdk.org",
        0.06,
        tuple(DPDK_SUBSYSTEMS),
        ("checkpatch", "build", "test", "iol-testing", "loongarch-compilation"),
        False,
        True,
    ),
    (
        "Patchwork",
        "patchwork",
        "patchwork.lists.ozlabs.org",
        0.04,
        tuple(PATCHWORK_SUBSYSTEMS),
        ("checkpatch", "test"),
        False,
        False,
    ),
)

CI_USERNAMES = (
    "kernelci",
    "lkp-robot",
    "netdev-ci",
    "patchew",
    "dpdk-ci",
    "uboot-ci",
    "checkpatch-bot",
    "kbuild-bot",
    "patchwork-ci",
    "iol-lab",
)

# Series sizes 1..15, mostly 1 to 5 (mean about 3).
SIZE_WEIGHTS = (45, 15, 12, 9, 7, 4, 3, 2.5, 1.5, 1.5, 1, 1, 0.7, 0.5, 0.5)
VERSIONS = ((1, 60), (2, 22), (3, 10), (4, 5), (5, 2), (6, 1))

# Final patch states once a maintainer had a look (slug, weight).
SETTLED_STATES = (
    ("accepted", 40),
    ("superseded", 22),
    ("changes-requested", 13),
    ("rejected", 6),
    ("under-review", 4),
    ("not-applicable", 4),
    ("rfc", 3),
    ("awaiting-upstream", 3),
    ("deferred", 3),
)
CHECK_STATES = (("success", 65), ("warning", 14), ("fail", 9), ("pending", 12))
CHECK_RANK = {"fail": 0, "warning": 1, "pending": 2, "success": 3}
CHECK_COUNTS = (50, 19, 13, 9, 5, 4)  # 0..5 checks per patch (mean about 1)

REPLIES = (
    "Looks good to me.",
    "Thanks, applied.",
    "Thanks, queued for the next merge window.",
    "Nit: please fix the commit message.",
    "This breaks the build on arm64, please fix and resend.",
    "Can you add a Fixes: tag?",
    "Why is this needed? The caller already holds the lock.",
    "Please split this into two patches.",
    "I think this needs a selftest as well.",
    "Applied to the for-next branch, thanks!",
)
TAGS = ("Reviewed-by", "Acked-by", "Tested-by", "Reported-by")

MAILERS = ("git-send-email 2.43.0", "git-send-email 2.39.2", "b4 0.14.1", "git-send-email 2.45.2")


# -- helpers -----------------------------------------------------------------


def iso(t: float) -> str:
    """A mail date as Patchwork shows it (seconds)."""
    return (_EPOCH + timedelta(seconds=int(t))).isoformat()


def iso_us(t: float) -> str:
    """A date Patchwork set itself (events, checks): microseconds."""
    return (_EPOCH + timedelta(seconds=t)).isoformat(timespec="microseconds")


def rfc2822(t: float) -> str:
    return (_EPOCH + timedelta(seconds=int(t))).strftime("%a, %d %b %Y %H:%M:%S -0000")


def cumulative(weights: Sequence[float]) -> list[float]:
    return list(itertools.accumulate(weights))


def ascii_name(text: str) -> str:
    table = str.maketrans("öéëŁłøåçüäñ", "oeelloacuan")
    return "".join(c for c in text.lower().translate(table) if c.isascii() and c.isalnum())


class Series:
    """One series being generated: its plan, then the ids as items pop."""

    __slots__ = (
        "cover",
        "cover_id",
        "cover_msgid",
        "first_msgid",
        "patch_ids",
        "project",
        "received",
        "remaining",
        "series_id",
        "start",
        "submitter",
        "tag",
        "title",
        "titles",
        "total",
        "version",
    )

    def __init__(self) -> None:
        self.series_id = 0
        self.cover_id: int | None = None
        self.cover_msgid = ""
        self.first_msgid = ""
        self.patch_ids: list[int] = []
        self.project = 0  # index into PROJECTS
        self.submitter = 0  # person id
        self.version = 1
        self.total = self.received = self.remaining = 0
        self.cover = False
        self.start = 0.0
        self.tag = ""
        self.title = ""
        self.titles: list[str] = []


# Heap item kinds, in the order same-date items pop.
COVER, PATCH, CHECK, PATCH_COMMENT, COVER_COMMENT, EVENT = range(6)


class Generator:
    def __init__(self, patches: int, seed: int) -> None:
        self.n = patches
        self.rng = random.Random(seed)
        self.heap: list[tuple[float, int, int, Any, Any]] = []
        self.seq = itertools.count()
        self.next_id = {
            name: 1
            for name in (
                "patches",
                "covers",
                "series",
                "events",
                "checks",
                "patch_comments",
                "cover_comments",
            )
        }
        self.msg_seq = itertools.count(1)
        self.check_seq = itertools.count(100000)
        self.batch = Batch()
        self.newest_event = ""
        self.patches_done = 0
        self.project_patches = [array("l") for _ in PROJECTS]
        self.version_cum = cumulative([w for _, w in VERSIONS])
        self.settled_cum = cumulative([w for _, w in SETTLED_STATES])
        self.check_cum = cumulative(CHECK_COUNTS)
        self.check_state_cum = cumulative([w for _, w in CHECK_STATES])
        self._world()
        self._text_pools()

    # -- the world: projects, users, people ------------------------------------

    def _world(self) -> None:
        rng = self.rng
        self.users: list[dict[str, Any]] = []
        names_used: set[str] = set()
        for uid in range(1, USERS + 1):
            if uid <= CI_BOTS:
                username = CI_USERNAMES[uid - 1]
                first, last, email = "", "", f"{username}@ci.example.org"
            else:
                first, last = rng.choice(FIRST), rng.choice(LAST)
                base = ascii_name(first)[:1] + ascii_name(last)
                username = base
                n = 1
                while username in names_used:
                    n += 1
                    username = f"{base}{n}"
                email = f"{ascii_name(first)}.{ascii_name(last)}@{rng.choice(DOMAINS)}"
            names_used.add(username)
            self.users.append(
                {
                    "id": uid,
                    "username": username,
                    "first_name": first,
                    "last_name": last,
                    "email": email,
                }
            )

        # Maintainers (delegates) per project, the big one has the most.
        maintainer_pool = list(range(CI_BOTS + 1, CI_BOTS + MAINTAINERS + 1))
        self.maintainers: list[list[int]] = []
        for index in range(len(PROJECTS)):
            count = (16, 10, 8, 6, 6, 4)[index]
            self.maintainers.append(rng.sample(maintainer_pool, count))
        # CI bots reporting checks to each project.
        self.ci_users = [[1, 2, 7, 8], [3, 7, 8], [4, 9], [6, 9], [5, 10], [9]]

        self.projects: list[dict[str, Any]] = []
        for index, (name, link, list_id, _, _, _, archive, deps) in enumerate(PROJECTS):
            local, _, domain = list_id.partition(".")
            lore = f"https://lore.kernel.org/{local}/" if archive else ""
            web = f"https://{domain}/" if index != 5 else "http://jk.ozlabs.org/projects/patchwork/"
            self.projects.append(
                {
                    "id": index + 1,
                    "name": name,
                    "link_name": link,
                    "list_id": list_id,
                    "list_email": f"{local}@{domain}",
                    "web_url": web,
                    "scm_url": f"git://git.example.org/{link}.git",
                    "webscm_url": f"https://git.example.org/{link}/",
                    "maintainers": [dict(self.users[u - 1]) for u in self.maintainers[index]],
                    "subject_match": "",
                    "list_archive_url": lore,
                    "list_archive_url_format": lore + "{}" if lore else "",
                    "commit_url_format": f"https://git.example.org/{link}/commit/?id={{}}",
                    "show_dependencies": deps,
                }
            )

        # People: about N/40; a few submit a lot (Zipf-like in each project).
        count = max(60, self.n // 40)
        self.people: list[dict[str, Any]] = []
        emails: set[str] = set()
        linked = {u["id"]: u for u in self.users[CI_BOTS:]}
        user_ids = list(linked)
        for pid in range(1, count + 1):
            if pid <= len(user_ids):  # registered users are people too
                user = linked[user_ids[pid - 1]]
                name = f"{user['first_name']} {user['last_name']}"
                email, user_id = user["email"], user["id"]
            else:
                first, last = rng.choice(FIRST), rng.choice(LAST)
                name = f"{first} {last}"
                email = f"{ascii_name(first)}.{ascii_name(last)}@{rng.choice(DOMAINS)}"
                user_id = None
            n = 1
            base_local, _, domain = email.partition("@")
            while email in emails:
                n += 1
                email = f"{base_local}{n}@{domain}"
            emails.add(email)
            self.people.append({"id": pid, "name": name, "email": email, "user": user_id})

        shares = cumulative([p[3] for p in PROJECTS])
        self.project_cum = shares
        homes: list[list[int]] = [[] for _ in PROJECTS]
        for person in self.people[len(user_ids) :]:
            homes[bisect.bisect(shares, rng.random() * shares[-1])].append(person["id"])
        self.submitters: list[list[int]] = []
        self.submitter_cum: list[list[float]] = []
        for index, home in enumerate(homes):
            # Maintainers submit (and review) much in their projects.
            mine = [u - CI_BOTS for u in self.maintainers[index]]  # person ids of users
            ranked = mine[:3] + home + mine[3:]
            self.submitters.append(ranked)
            self.submitter_cum.append(
                cumulative([1.0 / (r + 1) ** 0.85 for r in range(len(ranked))])
            )
        self.maintainer_people = [[u - CI_BOTS for u in m] for m in self.maintainers]

    def submitter(self, project: int) -> int:
        cum = self.submitter_cum[project]
        return self.submitters[project][bisect.bisect(cum, self.rng.random() * cum[-1])]

    # -- text ------------------------------------------------------------------

    def _text_pools(self) -> None:
        rng = self.rng
        idents = words(
            "dev priv skb buf ring queue ctx req desc port adapter hw cfg msg entry node "
            "page folio sk flow rx tx irq vma inode dentry bio"
        )
        types = words(
            "device net_device sk_buff page folio inode request_queue pci_dev platform_device "
            "ice_pf mlx5_core_dev drm_device file"
        )
        templates = (
            "\tif (!{v})",
            "\t\treturn -{e};",
            "\t{v} = {f}({v2}, {v3});",
            "\tstruct {t} *{v} = {v2}->{v3};",
            "\tspin_lock_irqsave(&{v}->lock, flags);",
            "\tspin_unlock_irqrestore(&{v}->lock, flags);",
            "\tmutex_lock(&{v}->{v2}_lock);",
            '\t\tdev_err(&{v}->dev, "failed to {f} {v2}: %d\\n", ret);',
            "\tgoto err_{f};",
            "\tkfree({v});",
            "}}",
            "",
            "static int {f}(struct {t} *{v})",
            "{{",
            "\tint ret;",
            "\tret = {f}({v}, {n});",
            "\tif (ret)",
            "\t\tgoto out;",
            "\t{v}->{v2} = {n};",
            "\tWARN_ON_ONCE({v}->{v2} > {n});",
            "\treturn 0;",
            "\tfor (i = 0; i < {v}->num_{v2}; i++) {{",
            "\t\t{f}(&{v}->{v2}[i]);",
            "\t}}",
            "#define {E}_{E2}\t\tBIT({n})",
            "\t/* {c} */",
            "\tu32 {v}_{v2} = READ_ONCE({v3}->{v});",
            "\tlist_for_each_entry({v}, &{v2}->list, {v3}) {{",
        )
        comments = (
            "make sure the queue is stopped first",
            "the hardware needs a moment here",
            "paired with the barrier in the completion path",
            "may be called from atomic context",
            "keep the old behaviour for older firmware",
        )
        errnos = ("EINVAL", "ENOMEM", "ENODEV", "EBUSY", "EIO", "EOPNOTSUPP", "ETIMEDOUT")
        funcs = [f"{c}_{f}" for c in COMPONENTS for f in FUNCS]

        def line() -> str:
            return rng.choice(templates).format(
                v=rng.choice(idents),
                v2=rng.choice(idents),
                v3=rng.choice(idents),
                t=rng.choice(types),
                f=rng.choice(funcs),
                e=rng.choice(errnos),
                n=rng.randrange(1, 512),
                E=rng.choice(idents).upper(),
                E2=rng.choice(idents).upper(),
                c=rng.choice(comments),
            )

        # Pre-rendered hunks: (text, added, removed).
        self.hunks: list[tuple[str, int, int]] = []
        for _ in range(3000):
            lines, added, removed = [], 0, 0
            for _ in range(rng.randint(4, 22)):
                roll = rng.random()
                if roll < 0.55:
                    lines.append(" " + line())
                elif roll < 0.8:
                    lines.append("+" + line())
                    added += 1
                else:
                    lines.append("-" + line())
                    removed += 1
            start = rng.randrange(1, 3000)
            old, new = len(lines) - added, len(lines) - removed
            head = f"@@ -{start},{old} +{start},{new} @@ static int {rng.choice(funcs)}(void)"
            self.hunks.append((head + "\n" + "\n".join(lines) + "\n", added, removed))

        sentences = []
        for _ in range(600):
            sentences.append(
                f"The {rng.choice(COMPONENTS)} driver does not {rng.choice(VERBS)} the "
                f"{rng.choice(OBJECTS)} when {rng.choice(CONDITIONS)}, which leads to "
                f"{rng.choice(OBJECTS)} in {rng.choice(funcs)}()."
            )
            sentences.append(
                f"{rng.choice(VERBS).capitalize()} the {rng.choice(OBJECTS)} so that "
                f"{rng.choice(funcs)}() can {rng.choice(VERBS)} it without the lock."
            )
        self.sentences = sentences
        self.files: list[list[str]] = []
        roots = {
            0: ("drivers/{c}", "fs/{c}", "mm", "kernel/{c}", "arch/arm64/{c}", "include/linux"),
            1: ("drivers/net/ethernet/{c}", "net/{c}", "tools/testing/selftests/net"),
            2: ("hw/{c}", "target/{c}", "block", "migration", "tests/qtest"),
            3: ("drivers/{c}", "board/{c}", "arch/arm/dts", "cmd", "common"),
            4: ("drivers/net/{c}", "lib/{c}", "app/test-pmd", "doc/guides/nics"),
            5: ("patchwork/{c}", "patchwork/api", "patchwork/tests", "docs"),
        }
        for index in range(len(PROJECTS)):
            paths = []
            for _ in range(400):
                folder = rng.choice(roots[index]).format(c=rng.choice(COMPONENTS))
                suffix = ".py" if index == 5 else rng.choice((".c", ".c", ".c", ".h"))
                paths.append(f"{folder}/{rng.choice(COMPONENTS)}_{rng.choice(FUNCS)}{suffix}")
            self.files.append(paths)

    def title(self, project: int) -> str:
        rng = self.rng
        subsystem = rng.choice(PROJECTS[project][4])
        prefix = f"{subsystem}: "
        if rng.random() < 0.6:
            prefix += f"{rng.choice(COMPONENTS)}: "
        roll = rng.random()
        if roll < 0.45:
            func = f"{rng.choice(COMPONENTS)}_{rng.choice(FUNCS)}"
            text = f"{rng.choice(VERBS)} {rng.choice(OBJECTS)} in {func}()"
        elif roll < 0.8:
            text = f"{rng.choice(VERBS)} {rng.choice(OBJECTS)}"
        elif roll < 0.99:
            text = f"{rng.choice(VERBS)} {rng.choice(OBJECTS)} when {rng.choice(CONDITIONS)}"
        else:
            text = f'Revert "{rng.choice(VERBS)} {rng.choice(OBJECTS)}"'
        return prefix + text

    def diff(self, project: int) -> tuple[str, str]:
        """A diff and its diffstat."""
        rng = self.rng
        parts, stat = [], []
        files = rng.choice((1, 1, 1, 2, 2, 3))
        total_add = total_del = 0
        for _ in range(files):
            path = rng.choice(self.files[project])
            index = f"{rng.getrandbits(28):07x}..{rng.getrandbits(28):07x}"
            parts.append(
                f"diff --git a/{path} b/{path}\nindex {index} 100644\n--- a/{path}\n+++ b/{path}\n"
            )
            added = removed = 0
            for _ in range(rng.choice((1, 1, 2, 3))):
                text, a, r = self.hunks[rng.randrange(len(self.hunks))]
                parts.append(text)
                added, removed = added + a, removed + r
            total_add, total_del = total_add + added, total_del + removed
            changes = added + removed
            bar = "+" * min(added, 40) + "-" * min(removed, 40)
            stat.append(f" {path} | {changes:3d} {bar}")
        stat.append(
            f" {files} file{'s' if files > 1 else ''} changed, {total_add} insertions(+), "
            f"{total_del} deletions(-)"
        )
        return "".join(parts), "\n".join(stat)

    def message(self, lines: int) -> str:
        rng = self.rng
        return "\n".join(rng.choice(self.sentences) for _ in range(lines))

    def msgid(self, t: float, what: str, person: dict[str, Any]) -> str:
        stamp = (_EPOCH + timedelta(seconds=int(t))).strftime("%Y%m%d%H%M%S")
        local, _, domain = person["email"].partition("@")
        return f"<{stamp}.{next(self.msg_seq)}-{what}-{local}@{domain}>"

    # -- the timeline ----------------------------------------------------------------

    def push(self, t: float, kind: int, a: Any, b: Any = None) -> None:
        heapq.heappush(self.heap, (t, next(self.seq), kind, a, b))

    def new_id(self, table: str) -> int:
        value = self.next_id[table]
        self.next_id[table] = value + 1
        return value

    def plan_series(self, t: float, size: int, received: int) -> Series:
        rng = self.rng
        s = Series()
        s.project = project = bisect.bisect(self.project_cum, rng.random() * self.project_cum[-1])
        s.submitter = self.submitter(project)
        s.version = VERSIONS[bisect.bisect(self.version_cum, rng.random() * self.version_cum[-1])][
            0
        ]
        s.total, s.received, s.remaining = size, received, received
        s.cover = rng.random() < (0.03 if size == 1 else 0.56)
        s.start = t
        tag = ""
        if project == 1:
            tag = rng.choice(("net", "net-next", "net-next", "bpf-next", ""))
        elif rng.random() < 0.04:
            tag = "RFC"
        s.tag = tag
        s.title = self.title(project)
        s.titles = [s.title] + [self.title(project) for _ in range(received - 1)]
        if s.cover:
            s.title = rng.choice(
                (
                    f"{s.title.split(': ')[0]}: {rng.choice(OBJECTS)} fixes",
                    f"{s.title.split(': ')[0]}: add support for {rng.choice(COMPONENTS)}",
                    f"{rng.choice(COMPONENTS)}: {rng.choice(VERBS)} {rng.choice(OBJECTS)}",
                )
            )
            self.push(t, COVER, s)
        gap = rng.uniform(0.5, 4.0)
        for i in range(received):
            self.push(t + (i + s.cover) * gap, PATCH, s, i)
        return s

    def prefixes(self, s: Series, number: int) -> list[str]:
        out = []
        if s.tag:
            out.append(s.tag)
        if s.version > 1:
            out.append(f"v{s.version}")
        if s.total > 1 or number == 0:
            width = len(str(s.total))
            out.append(f"{number:0{width}d}/{s.total}")
        return out

    def subject(self, prefixes: list[str], title: str) -> tuple[str, str]:
        """(name, Subject header) as Patchwork and the mail show them."""
        name = f"[{','.join(prefixes)}] {title}" if prefixes else title
        tags = [p for p in prefixes if p != "RFC"]
        word = "RFC PATCH" if "RFC" in prefixes else "PATCH"
        return name, f"[{' '.join([word, *tags])}] {title}"

    def headers(
        self, person: dict[str, Any], subject: str, t: float, msgid: str, project: int, reply: str
    ) -> dict[str, Any]:
        rng = self.rng
        proj = self.projects[project]
        headers: dict[str, Any] = {
            "Return-Path": f"<{person['email']}>",
            "From": f"{person['name']} <{person['email']}>",
            "To": proj["list_email"],
        }
        cc = rng.randrange(4)
        if cc:
            people = self.people
            headers["Cc"] = ", ".join(
                f"{p['name']} <{p['email']}>" for p in (rng.choice(people) for _ in range(cc))
            )
        headers["Subject"] = subject
        headers["Date"] = rfc2822(t)
        headers["Message-Id"] = msgid
        if reply:
            headers["In-Reply-To"] = reply
            headers["References"] = reply
        headers["X-Mailer"] = rng.choice(MAILERS)
        headers["MIME-Version"] = "1.0"
        headers["Content-Type"] = 'text/plain; charset="utf-8"'
        headers["Content-Transfer-Encoding"] = "8bit"
        headers["List-Id"] = f"<{proj['list_id']}>"
        return headers

    def site(self, project: int, kind: str, msgid: str) -> tuple[str, str, str | None]:
        """(web_url, mbox, list_archive_url) of a patch or cover."""
        proj = self.projects[project]
        bare = msgid[1:-1]
        web = f"/project/{proj['link_name']}/{kind}/{bare}/"
        fmt = proj["list_archive_url_format"]
        return web, web + "mbox/", fmt.format(bare) if fmt else None

    def event(
        self, t: float, category: str, project: int, actor: int | None, **payload: Any
    ) -> None:
        doc = {"category": category, "project": project + 1, "date": iso_us(t), "actor": actor}
        doc.update(payload)
        self.push(t, EVENT, doc)

    # -- items as they pop ---------------------------------------------------------

    def on_cover(self, t: float, s: Series) -> None:
        rng = self.rng
        s.series_id = self.new_id("series")
        cover_id = s.cover_id = self.new_id("covers")
        person = self.people[s.submitter - 1]
        msgid = s.cover_msgid = self.msgid(t, "cover", person)
        name, subject = self.subject(self.prefixes(s, 0), s.title)
        web, mbox, archive = self.site(s.project, "cover", msgid)
        shortlog = "\n".join(f"  {title}" for title in s.titles)
        content = (
            f"{self.message(rng.randint(2, 8))}\n\n"
            + (
                f"Changes since v{s.version - 1}:\n- addressed review comments\n\n"
                if s.version > 1
                else ""
            )
            + f"{person['name']} ({s.total}):\n{shortlog}\n"
        )
        self.batch.add(
            "covers",
            {
                "id": cover_id,
                "web_url": web,
                "project": s.project + 1,
                "msgid": msgid,
                "list_archive_url": archive,
                "date": iso(t),
                "name": name,
                "submitter": s.submitter,
                "mbox": mbox,
                "series": [s.series_id],
                "headers": self.headers(person, subject, t, msgid, s.project, ""),
                "content": content,
            },
        )
        self.event(t + rng.uniform(1, 90), "series-created", s.project, None, series=s.series_id)
        self.event(t + rng.uniform(1, 90), "cover-created", s.project, None, cover=cover_id)
        if rng.random() < 0.275:  # about covers/2 comments
            for _ in range(1 + int(rng.expovariate(0.8))):
                when = t + min(rng.expovariate(1 / (2 * DAY)), 60 * DAY)
                if when < END:
                    self.push(when, COVER_COMMENT, (s, name, subject, msgid))

    def on_patch(self, t: float, s: Series, number: int) -> None:
        rng = self.rng
        project = s.project
        first = number == 0
        if not s.series_id:
            s.series_id = self.new_id("series")
        if first and not s.cover:
            self.event(t + rng.uniform(1, 90), "series-created", project, None, series=s.series_id)
        patch_id = self.new_id("patches")
        s.patch_ids.append(patch_id)
        self.project_patches[project].append(patch_id)
        person = self.people[s.submitter - 1]
        msgid = self.msgid(t, f"{number + 1}", person)
        if first:
            s.first_msgid = msgid
        prefixes = self.prefixes(s, number + 1 if s.total > 1 else 1)
        if s.total == 1 and s.version == 1 and not s.tag:
            prefixes = []
        name, subject = self.subject(prefixes, s.titles[number])
        web, mbox, archive = self.site(project, "patch", msgid)

        # What happens to it later decides how it looks now.
        age = END - t
        state, delegate, archived = "new", None, False
        changed_at = t + min(rng.expovariate(1 / (10 * DAY)), 300 * DAY)
        if changed_at < END and rng.random() < 0.9:
            roll = rng.random() * self.settled_cum[-1]
            state = SETTLED_STATES[bisect.bisect(self.settled_cum, roll)][0]
        delegated_at = t + rng.expovariate(1 / (2 * DAY))
        if rng.random() < 0.3 and delegated_at < END:
            delegate = rng.choice(self.maintainers[project])
        if state not in ("new", "under-review") and age > 30 * DAY:
            archived = rng.random() < 0.76
        elif age > 365 * DAY:
            archived = rng.random() < 0.35
        checks = []
        for _ in range(bisect.bisect(self.check_cum, rng.random() * self.check_cum[-1])):
            when = t + rng.uniform(300, 6 * 3600)
            if when < END:
                checks.append(when)
        contexts = rng.sample(PROJECTS[project][5], min(len(checks), len(PROJECTS[project][5])))
        check_states = []
        for when, context in zip(checks, contexts, strict=False):
            roll = rng.random() * self.check_state_cum[-1]
            check_state = CHECK_STATES[bisect.bisect(self.check_state_cum, roll)][0]
            check_states.append(check_state)
            self.push(when, CHECK, (patch_id, project, context, check_state))
        check = min(check_states, key=CHECK_RANK.__getitem__) if check_states else "pending"

        diff, stat = self.diff(project)
        tags = "".join(
            f"{rng.choice(TAGS)}: {p['name']} <{p['email']}>\n"
            for p in (rng.choice(self.people) for _ in range(rng.choice((0, 0, 1, 1, 2, 3))))
        )
        content = (
            f"{self.message(rng.randint(1, 6))}\n\n{tags}"
            f"Signed-off-by: {person['name']} <{person['email']}>\n---\n{stat}"
        )
        reply = s.cover_msgid or (s.first_msgid if not first else "")
        doc = {
            "id": patch_id,
            "web_url": web,
            "project": project + 1,
            "msgid": msgid,
            "list_archive_url": archive,
            "date": iso(t),
            "name": name,
            "commit_ref": f"{rng.getrandbits(160):040x}"
            if state == "accepted" and rng.random() < 0.7
            else None,
            "pull_url": None,
            "state": state,
            "archived": archived,
            "hash": f"{rng.getrandbits(160):040x}",
            "submitter": s.submitter,
            "delegate": delegate,
            "mbox": mbox,
            "series": [s.series_id],
            "check": check,
            "tags": {},
            "related": [],
            "headers": self.headers(person, subject, t, msgid, project, reply),
            "content": content,
            "diff": diff,
            "prefixes": prefixes,
        }
        self.batch.add("patches", doc)
        self.patches_done += 1

        created = t + rng.uniform(1, 90)
        self.event(created, "patch-created", project, None, patch=patch_id)
        if s.received == s.total:
            self.event(
                created + 0.001,
                "patch-completed",
                project,
                None,
                patch=patch_id,
                series=s.series_id,
            )
        maintainers = self.maintainers[project]
        if state != "new":
            actor = delegate or rng.choice(maintainers)
            previous = "new"
            if state != "under-review" and rng.random() < 0.2:
                when = t + (changed_at - t) * rng.random()
                self.event(
                    when,
                    "patch-state-changed",
                    project,
                    actor,
                    patch=patch_id,
                    previous_state="new",
                    current_state="under-review",
                )
                previous = "under-review"
            self.event(
                changed_at,
                "patch-state-changed",
                project,
                actor,
                patch=patch_id,
                previous_state=previous,
                current_state=state,
            )
        if delegate is not None:
            self.event(
                delegated_at,
                "patch-delegated",
                project,
                rng.choice(maintainers),
                patch=patch_id,
                previous_delegate=None,
                current_delegate=delegate,
            )
        if rng.random() < 0.225:  # about N/2 comments: most patches have none
            for _ in range(1 + int(rng.expovariate(0.6))):
                when = t + min(rng.expovariate(1 / (2 * DAY)), 90 * DAY)
                if when < END:
                    self.push(when, PATCH_COMMENT, (patch_id, project, subject, msgid))

        s.remaining -= 1
        if s.remaining == 0:
            if s.received == s.total:
                self.event(
                    t + rng.uniform(2, 120), "series-completed", project, None, series=s.series_id
                )
            self.finish_series(s)

    def finish_series(self, s: Series) -> None:
        proj = self.projects[s.project]
        self.batch.add(
            "series",
            {
                "id": s.series_id,
                "web_url": f"/project/{proj['link_name']}/list/?series={s.series_id}",
                "project": s.project + 1,
                "name": s.title,
                "date": iso(s.start),
                "submitter": s.submitter,
                "version": s.version,
                "total": s.total,
                "received_total": s.received,
                "received_all": s.received == s.total,
                "mbox": f"/series/{s.series_id}/mbox/",
                "cover_letter": s.cover_id,
                "patches": s.patch_ids,
                "dependencies": [],
                "dependents": [],
            },
        )

    def on_check(self, t: float, item: tuple[int, int, str, str]) -> None:
        rng = self.rng
        patch_id, project, context, state = item
        check_id = self.new_id("checks")
        user = rng.choice(self.ci_users[project])
        description = {
            "success": rng.choice(("", "Success", "All checks passed", "Link")),
            "warning": rng.choice(("3 warnings", "Warnings found", "1 new warning")),
            "fail": rng.choice(("build failed", "Errors found", "Test failed")),
            "pending": rng.choice(("", "Queued", "Running")),
        }[state]
        self.batch.add(
            "checks",
            {
                "id": check_id,
                "patch": patch_id,
                "date": iso_us(t),
                "state": state,
                "target_url": f"https://ci.example.org/job/{next(self.check_seq)}",
                "context": context,
                "user": user,
                "description": description,
            },
        )
        self.event(
            t + rng.uniform(0.001, 0.5),
            "check-created",
            project,
            user,
            patch=patch_id,
            created_check=check_id,
        )

    def _comment(
        self, t: float, table: str, project: int, subject: str, msgid: str
    ) -> dict[str, Any]:
        rng = self.rng
        comment_id = self.new_id(table)
        if rng.random() < 0.4:
            pid = rng.choice(self.maintainer_people[project])
        else:
            pid = self.submitter(project)
        person = self.people[pid - 1]
        own = self.msgid(t, "reply", person)
        quote = "\n".join("> " + line for line in self.message(rng.randint(1, 3)).split("\n"))
        reply = rng.choice(REPLIES)
        if rng.random() < 0.4:
            reply += f"\n\n{rng.choice(TAGS[:3])}: {person['name']} <{person['email']}>"
        proj = self.projects[project]
        fmt = proj["list_archive_url_format"]
        return {
            "id": comment_id,
            "web_url": f"/comment/{comment_id}/",
            "msgid": own,
            "list_archive_url": fmt.format(own[1:-1]) if fmt else None,
            "date": iso(t),
            "subject": "Re: " + subject,
            "submitter": pid,
            "content": f"On {rfc2822(t - 3600)}, somebody wrote:\n{quote}\n\n{reply}",
            "headers": self.headers(person, "Re: " + subject, t, own, project, msgid),
            # Patchwork shows null until someone marks a comment addressed.
            "addressed": True if table == "patch_comments" and rng.random() < 0.07 else None,
        }

    def on_patch_comment(self, t: float, item: tuple[int, int, str, str]) -> None:
        patch_id, project, subject, msgid = item
        doc = self._comment(t, "patch_comments", project, subject, msgid)
        doc["patch"] = patch_id
        self.batch.add("patch_comments", doc)
        self.event(
            t + self.rng.uniform(1, 60),
            "patch-comment-created",
            project,
            None,
            patch=patch_id,
            patch_comment=doc["id"],
        )

    def on_cover_comment(self, t: float, item: tuple[Series, str, str, str]) -> None:
        s, _, subject, msgid = item
        assert s.cover_id is not None
        doc = self._comment(t, "cover_comments", s.project, subject, msgid)
        doc["cover"] = s.cover_id
        self.batch.add("cover_comments", doc)
        self.event(
            t + self.rng.uniform(1, 60),
            "cover-comment-created",
            s.project,
            None,
            cover=s.cover_id,
            cover_comment=doc["id"],
        )

    def on_event(self, doc: dict[str, Any]) -> None:
        doc = {"id": self.new_id("events"), **doc}
        self.batch.add("events", doc)
        self.newest_event = doc["date"]

    def drain(self, until: float) -> None:
        """Give ids to, and batch, everything dated before ``until``."""
        heap = self.heap
        pop = heapq.heappop
        while heap and heap[0][0] < until:
            t, _, kind, a, b = pop(heap)
            if kind == EVENT:
                self.on_event(a)
            elif kind == PATCH:
                self.on_patch(t, a, b)
            elif kind == CHECK:
                self.on_check(t, a)
            elif kind == PATCH_COMMENT:
                self.on_patch_comment(t, a)
            elif kind == COVER:
                self.on_cover(t, a)
            else:
                self.on_cover_comment(t, a)

    # -- whole runs -------------------------------------------------------------------

    def series_sizes(self) -> list[tuple[int, int]]:
        """(total, received) of every series, until N patches are received."""
        rng = self.rng
        cum = cumulative(SIZE_WEIGHTS)
        sizes, got = [], 0
        while got < self.n:
            total = bisect.bisect(cum, rng.random() * cum[-1]) + 1
            received = total
            if total > 1 and rng.random() < 0.03:
                received = rng.randint(1, total - 1)
            received = min(received, self.n - got)
            total = max(total, received)
            sizes.append((total, received))
            got += received
        return sizes

    @staticmethod
    def when(u: float) -> float:
        """Traffic grows over the years: density proportional to 1 + 2x."""
        x = (-1 + math.sqrt(1 + 8 * u)) / 2
        return START + (SPAN - DAY) * x


def bundles(gen: Generator, batch: Batch) -> int:
    rng = gen.rng
    count = min(MAX_BUNDLES, max(10, gen.n // 200))
    names: set[tuple[int, str]] = set()
    for bundle_id in range(1, count + 1):
        project = bisect.bisect(gen.project_cum, rng.random() * gen.project_cum[-1])
        ids = gen.project_patches[project]
        if not ids:
            project, ids = 0, gen.project_patches[0]
        owner = gen.users[rng.randrange(CI_BOTS, USERS)]
        purpose = rng.choice(("review", "todo", "backports", "stable", "ci", "series"))
        base = f"{PROJECTS[project][1]}-{rng.choice(COMPONENTS)}-{purpose}"
        name, n = base, 1
        while (owner["id"], name) in names:
            n += 1
            name = f"{base}-{n}"
        names.add((owner["id"], name))
        start = rng.randrange(len(ids))
        picked = sorted(
            {ids[min(len(ids) - 1, start + rng.randrange(200))] for _ in range(rng.randint(2, 40))}
        )
        web = f"/bundle/{owner['username']}/{name}/"
        batch.add(
            "bundles",
            {
                "id": bundle_id,
                "web_url": web,
                "project": project + 1,
                "name": name,
                "owner": owner["id"],
                "patches": picked,
                "public": rng.random() < 0.5,
                "mbox": web + "mbox/",
            },
        )
    return count


async def generate(
    path: Path,
    patches: int,
    seed: int = 1,
    *,
    origin: str = ORIGIN,
    window: int = 500,
    progress: bool = True,
) -> dict[str, Any]:
    """Write a synthetic mirror of ``patches`` patches at ``path``; the counts.

    ``window``: series generated per store batch (one transaction each).
    """
    started = time.monotonic()
    gen = Generator(patches, seed)
    sizes = gen.series_sizes()
    db = await schema.connect(path)
    counts: dict[str, int] = {}
    try:
        first = Batch()
        for user in gen.users:
            first.add("users", user)
        for project in gen.projects:
            first.add("projects", project)
        for person in gen.people:
            first.add("people", person)
        await store.write(db, first)

        total = len(sizes)
        last_report = time.monotonic()
        objects = len(first)

        def make(start: int) -> Batch:
            """The next window of series, and everything dated before the one after."""
            for k in range(start, min(start + window, total)):
                gen.plan_series(gen.when((k + gen.rng.random()) / total), *sizes[k])
            nxt = start + window
            gen.drain(gen.when(nxt / total) if nxt < total else END)
            batch, gen.batch = gen.batch, Batch()
            return batch

        # Generating (a thread) overlaps writing (SQLite's own thread): the
        # GIL is free while SQLite works.
        starts = range(0, total, window)
        batch = await asyncio.to_thread(make, 0)
        for start in starts:
            writing = asyncio.ensure_future(store.write(db, batch))
            nxt = start + window
            following = asyncio.to_thread(make, nxt) if nxt < total else None
            objects += len(batch)
            if following is not None:
                batch = await following
            await writing
            now = time.monotonic()
            if progress and (now - last_report >= 5 or nxt >= total):
                last_report = now
                elapsed = now - started
                print(
                    f"{elapsed:7.1f}s  series {min(nxt, total)}/{total}  "
                    f"patches {gen.patches_done}/{patches}  objects {objects}  "
                    f"({objects / elapsed:,.0f}/s)",
                    flush=True,
                )
        gen.heap.clear()  # what would happen after the crawl
        last = Batch()
        bundles(gen, last)
        last.meta.update(
            {
                "upstream.url": origin.rstrip("/"),
                CURSOR: gen.newest_event,
                "sync.state": "complete",
                "sync.completed_at": datetime.now(UTC).isoformat(),
            }
        )
        await store.write(db, last)
        # What a generated mirror was made of is no news to any reader: the
        # change log starts empty, its low-water mark after the crawl.
        await store.trim_changes(db, days=0.0)
        for name in (res.table for res in RESOURCES.values()):
            rows = await db.execute_fetchall(f"SELECT count(*) FROM {name}")
            counts[name] = next(iter(rows))[0]
        await db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        await db.close()
    return {
        **counts,
        "seconds": round(time.monotonic() - started, 1),
        "bytes": sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patches", type=int, required=True, help="how many patches")
    parser.add_argument("--out", type=Path, required=True, help="the mirror file to write")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    parser.add_argument("--origin", default=ORIGIN, help="upstream URL the mirror claims")
    parser.add_argument(
        "--window", type=int, default=500, help="series per batch (one transaction each)"
    )
    args = parser.parse_args()
    if args.patches < 1:
        parser.error("--patches: at least 1")
    out: Path = args.out
    files = [out, Path(f"{out}-wal"), Path(f"{out}-shm")]
    if out.exists() and not args.force:
        print(f"{out} exists; pass --force to overwrite it", file=sys.stderr)
        return 1
    for f in files:
        f.unlink(missing_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    counts = asyncio.run(
        generate(out, args.patches, args.seed, origin=args.origin, window=args.window)
    )
    seconds, size = counts.pop("seconds"), counts.pop("bytes")
    width = max(len(k) for k in counts)
    for name, value in counts.items():
        print(f"{name:<{width}} {value:>12,}")
    print(f"generated in {seconds:.1f} s; {out}: {size / 2**20:,.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
