"""linebench's own font: the Hershey simplex Roman strokes, measured and laid out here.

Label text feeds a row's content (label boxes steer placement and audits), so its metrics and
strokes must not come from a rasteriser whose answer changes between versions: OpenCV 5.1 changed
`cv2.getTextSize` and `cv2.putText`, and with them which scenes were accepted (issue 25). Here the
glyphs are a data table, the metrics integer arithmetic on it, and the strokes fixed-point points
that `render` draws as ordinary anti-aliased polylines. The metrics follow OpenCV 4.x's
FONT_HERSHEY_SIMPLEX rule on the same glyphs (advances, cap and base lines, rounding half to even);
OpenCV 5 had already changed both metrics and glyphs, so labels sit a little differently from
generator core4's.

Glyph data: the Hershey fonts were originally created by Dr. A. V. Hershey while working at the
U. S. National Bureau of Standards. The format of the font data in this distribution was
originally created by James Hurt, Cognition, Inc., 900 Technology Park Drive, Billerica, MA 01821.
(Public domain; that acknowledgement travels with the data. Taken from the `rowmans` table, the
Roman simplex glyphs in ASCII order, as distributed in the Hershey-Fonts 2.1.0 package.)
Each entry: two characters for the glyph's left and right bearings, then (x, y) pairs, every
coordinate a character whose code minus ord('R') is the value in font units; " R" lifts the pen.
"""

from __future__ import annotations

import functools

import numpy as np

from .errors import UsageError

# char -> jhf strokes (Hershey glyph number in the comment)
GLYPHS: dict[str, str] = {
    ' ': 'JZ',  # 699
    '!': 'MWRFRT RRYQZR[SZRY',  # 714
    '"': 'JZNFNM RVFVM',  # 717
    '#': 'H]SBLb RYBRb RLOZO RKUYU',  # 733
    '$': 'H\\PBP_ RTBT_ RYIWGTFPFMGKIKKLMMNOOUQWRXSYUYXWZT[P[MZKX',  # 719
    '%': 'F^[FI[ RNFPHPJOLMMKMIKIIJGLFNFPGSHVHYG[F RWTUUTWTYV[X[ZZ[X[VYTWT',  # 2271
    '&': 'E_\\O\\N[MZMYNXPVUTXRZP[L[JZIYHWHUISJRQNRMSKSIRGPFNGMIMKNNPQUXWZY[[[\\Z\\Y',  # 734
    "'": 'MWRHQGRFSGSIRKQL',  # 731
    '(': 'KYVBTDRGPKOPOTPYR]T`Vb',  # 721
    ')': 'KYNBPDRGTKUPUTTYR]P`Nb',  # 722
    '*': 'JZRFRR RMIWO RWIMO',  # 2219
    '+': 'E_RIR[ RIR[R',  # 725
    ',': 'MWSZR[QZRYSZS\\R^Q_',  # 711
    '-': 'E_IR[R',  # 724
    '.': 'MWRYQZR[SZRY',  # 710
    '/': 'G][BIb',  # 720
    '0': 'H\\QFNGLJKOKRLWNZQ[S[VZXWYRYOXJVGSFQF',  # 700
    '1': 'H\\NJPISFS[',  # 701
    '2': 'H\\LKLJMHNGPFTFVGWHXJXLWNUQK[Y[',  # 702
    '3': 'H\\MFXFRNUNWOXPYSYUXXVZS[P[MZLYKW',  # 703
    '4': 'H\\UFKTZT RUFU[',  # 704
    '5': 'H\\WFMFLOMNPMSMVNXPYSYUXXVZS[P[MZLYKW',  # 705
    '6': 'H\\XIWGTFRFOGMJLOLTMXOZR[S[VZXXYUYTXQVOSNRNOOMQLT',  # 706
    '7': 'H\\YFO[ RKFYF',  # 707
    '8': 'H\\PFMGLILKMMONSOVPXRYTYWXYWZT[P[MZLYKWKTLRNPQOUNWMXKXIWGTFPF',  # 708
    '9': 'H\\XMWPURRSQSNRLPKMKLLINGQFRFUGWIXMXRWWUZR[P[MZLX',  # 709
    ':': 'MWRMQNROSNRM RRYQZR[SZRY',  # 712
    ';': 'MWRMQNROSNRM RSZR[QZRYSZS\\R^Q_',  # 713
    '<': 'F^ZIJRZ[',  # 2241
    '=': 'E_IO[O RIU[U',  # 726
    '>': 'F^JIZRJ[',  # 2242
    '?': 'I[LKLJMHNGPFTFVGWHXJXLWNVORQRT RRYQZR[SZRY',  # 715
    '@': 'E`WNVLTKQKOLNMMPMSNUPVSVUUVS RQKOMNPNSOUPV RWKVSVUXVZV\\T]Q]O\\L[JYHWGTFQFNGLHJJILHOHRIUJWLYNZQ[T[WZYYZX RXKWSWUXV',  # 2273
    'A': 'I[RFJ[ RRFZ[ RMTWT',  # 501
    'B': 'G\\KFK[ RKFTFWGXHYJYLXNWOTP RKPTPWQXRYTYWXYWZT[K[',  # 502
    'C': 'H]ZKYIWGUFQFOGMILKKNKSLVMXOZQ[U[WZYXZV',  # 503
    'D': 'G\\KFK[ RKFRFUGWIXKYNYSXVWXUZR[K[',  # 504
    'E': 'H[LFL[ RLFYF RLPTP RL[Y[',  # 505
    'F': 'HZLFL[ RLFYF RLPTP',  # 506
    'G': 'H]ZKYIWGUFQFOGMILKKNKSLVMXOZQ[U[WZYXZVZS RUSZS',  # 507
    'H': 'G]KFK[ RYFY[ RKPYP',  # 508
    'I': 'NVRFR[',  # 509
    'J': 'JZVFVVUYTZR[P[NZMYLVLT',  # 510
    'K': 'G\\KFK[ RYFKT RPOY[',  # 511
    'L': 'HYLFL[ RL[X[',  # 512
    'M': 'F^JFJ[ RJFR[ RZFR[ RZFZ[',  # 513
    'N': 'G]KFK[ RKFY[ RYFY[',  # 514
    'O': 'G]PFNGLIKKJNJSKVLXNZP[T[VZXXYVZSZNYKXIVGTFPF',  # 515
    'P': 'G\\KFK[ RKFTFWGXHYJYMXOWPTQKQ',  # 516
    'Q': 'G]PFNGLIKKJNJSKVLXNZP[T[VZXXYVZSZNYKXIVGTFPF RSWY]',  # 517
    'R': 'G\\KFK[ RKFTFWGXHYJYLXNWOTPKP RRPY[',  # 518
    'S': 'H\\YIWGTFPFMGKIKKLMMNOOUQWRXSYUYXWZT[P[MZKX',  # 519
    'T': 'JZRFR[ RKFYF',  # 520
    'U': 'G]KFKULXNZQ[S[VZXXYUYF',  # 521
    'V': 'I[JFR[ RZFR[',  # 522
    'W': 'F^HFM[ RRFM[ RRFW[ R\\FW[',  # 523
    'X': 'H\\KFY[ RYFK[',  # 524
    'Y': 'I[JFRPR[ RZFRP',  # 525
    'Z': 'H\\YFK[ RKFYF RK[Y[',  # 526
    '[': 'KYOBOb RPBPb ROBVB RObVb',  # 2223
    '\\': 'KYKFY^',  # 804
    ']': 'KYTBTb RUBUb RNBUB RNbUb',  # 2224
    '^': 'JZPLRITL RMORJWO RRJR[',  # 2262
    '_': 'JZJ]Z]',  # 999
    '`': 'MWSFRGQIQKRLSKRJ',  # 730
    'a': 'I\\XMX[ RXPVNTMQMONMPLSLUMXOZQ[T[VZXX',  # 601
    'b': 'H[LFL[ RLPNNPMSMUNWPXSXUWXUZS[P[NZLX',  # 602
    'c': 'I[XPVNTMQMONMPLSLUMXOZQ[T[VZXX',  # 603
    'd': 'I\\XFX[ RXPVNTMQMONMPLSLUMXOZQ[T[VZXX',  # 604
    'e': 'I[LSXSXQWOVNTMQMONMPLSLUMXOZQ[T[VZXX',  # 605
    'f': 'MYWFUFSGRJR[ ROMVM',  # 606
    'g': 'I\\XMX]W`VaTbQbOa RXPVNTMQMONMPLSLUMXOZQ[T[VZXX',  # 607
    'h': 'I\\MFM[ RMQPNRMUMWNXQX[',  # 608
    'i': 'NVQFRGSFREQF RRMR[',  # 609
    'j': 'MWRFSGTFSERF RSMS^RaPbNb',  # 610
    'k': 'IZMFM[ RWMMW RQSX[',  # 611
    'l': 'NVRFR[',  # 612
    'm': 'CaGMG[ RGQJNLMOMQNRQR[ RRQUNWMZM\\N]Q][',  # 613
    'n': 'I\\MMM[ RMQPNRMUMWNXQX[',  # 614
    'o': 'I\\QMONMPLSLUMXOZQ[T[VZXXYUYSXPVNTMQM',  # 615
    'p': 'H[LMLb RLPNNPMSMUNWPXSXUWXUZS[P[NZLX',  # 616
    'q': 'I\\XMXb RXPVNTMQMONMPLSLUMXOZQ[T[VZXX',  # 617
    'r': 'KXOMO[ ROSPPRNTMWM',  # 618
    's': 'J[XPWNTMQMNNMPNRPSUTWUXWXXWZT[Q[NZMX',  # 619
    't': 'MYRFRWSZU[W[ ROMVM',  # 620
    'u': 'I\\MMMWNZP[S[UZXW RXMX[',  # 621
    'v': 'JZLMR[ RXMR[',  # 622
    'w': 'G]JMN[ RRMN[ RRMV[ RZMV[',  # 623
    'x': 'J[MMX[ RXMM[',  # 624
    'y': 'JZLMR[ RXMR[P_NaLbKb',  # 625
    'z': 'J[XMM[ RMMXM RM[X[',  # 626
    '{': 'KYTBRCQDPFPHQJRKSMSOQQ RRCQEQGRISJTLTNSPORSTTVTXSZR[Q]Q_Ra RQSSUSWRYQZP\\P^Q`RaTb',  # 2225
    '|': 'NVRBRb',  # 723
    '}': 'KYPBRCSDTFTHSJRKQMQOSQ RRCSESGRIQJPLPNQPURQTPVPXQZR[S]S_Ra RSSQUQWRYSZT\\T^S`RaPb',  # 2226
    '~': 'F^IUISJPLONOPPTSVTXTZS[Q RISJQLPNPPQTTVUXUZT[Q[O',  # 2246
}

# Font units: the baseline lies 9 units below the font's origin line, capitals reach 12 above it.
BASE_LINE = 9
CAP_LINE = 12
FIXED_SHIFT = 16  # stroke points in 1/65536 px, as OpenCV's own text drawing
_R = ord("R")


def check_text(text: str) -> None:
    bad = sorted({c for c in text if c not in GLYPHS})
    if bad:
        raise UsageError(f"the label font has no glyph for {', '.join(map(repr, bad))} (printable ASCII only)")


def _round_half_even(x: float) -> int:
    return int(round(x))  # Python rounds halves to even, like C's lrint (cvRound)


@functools.lru_cache(maxsize=None)
def _glyph(ch: str) -> tuple[int, int, tuple[tuple[tuple[int, int], ...], ...]]:
    """(left bearing, right bearing, strokes of (x, y) font units)."""
    data = GLYPHS[ch]
    left, right = ord(data[0]) - _R, ord(data[1]) - _R
    strokes = []
    for part in data[2:].split(" R"):
        pts = tuple((ord(part[i]) - _R, ord(part[i + 1]) - _R) for i in range(0, len(part) - 1, 2))
        if len(pts) > 1:  # a single point draws nothing (OpenCV skips it too)
            strokes.append(pts)
    return left, right, tuple(strokes)


@functools.lru_cache(maxsize=4096)
def text_size(text: str, scale: float, thickness_px: int) -> tuple[int, int, int]:
    """(width, height above baseline, depth below baseline) in px."""
    check_text(text)
    advance = 0.0
    for ch in text:
        left, right, _ = _glyph(ch)
        advance += (right - left) * scale
    width = _round_half_even(advance + thickness_px)
    height = _round_half_even((CAP_LINE + BASE_LINE) * scale + (thickness_px + 1) // 2)
    depth = _round_half_even(BASE_LINE * scale + thickness_px * 0.5)
    return width, height, depth


@functools.lru_cache(maxsize=4096)
def _strokes_at_origin(text: str, scale: float) -> tuple[np.ndarray, ...]:
    """`text_strokes(text, (0, 0), scale)` as int64 arrays (cached: labels repeat)."""
    check_text(text)
    unit = _round_half_even(scale * (1 << FIXED_SHIFT))
    x, y = 0, -BASE_LINE * unit
    out = []
    for ch in text:
        left, right, strokes = _glyph(ch)
        x -= left * unit
        for pts in strokes:
            out.append(np.array([(px * unit + x, py * unit + y) for px, py in pts], dtype=np.int64))
        x += right * unit
    return tuple(out)


def text_strokes(text: str, origin: tuple[int, int], scale: float) -> list[np.ndarray]:
    """The polylines that draw `text` with its baseline's left end at the integer pixel `origin`
    (OpenCV's text convention) -> int32 [M, 2] arrays in 1/2**FIXED_SHIFT px, OpenCV pixel centres."""
    shift = np.array([int(origin[0]) << FIXED_SHIFT, int(origin[1]) << FIXED_SHIFT], dtype=np.int64)
    out = [p + shift for p in _strokes_at_origin(text, scale)]  # integers: exact in any order
    if out and max(int(np.abs(p).max()) for p in out) >= 1 << 31:
        raise UsageError(f"text {text!r} at {tuple(origin)} lies outside the drawable range")
    return [p.astype(np.int32) for p in out]
