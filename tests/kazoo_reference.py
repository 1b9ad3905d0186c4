"""Independent reference for rerate's rating, used by tests/rating.rs.

Reads one case per line on stdin: "rate increment minimum surcharge nocharge discount
billing_seconds offset" (an absent value is "-"), prints "billed kazoo_cost exact_cost" per line.

kazoo: KAZOO's kapps_call_util:calculate_call/1 transcribed from Erlang; Python floats are IEEE
doubles with round-to-nearest, as Erlang's are, so the same operation order gives the same bits.
exact: the same formula over fractions.Fraction, truncated once.
"""
import math
import sys
from fractions import Fraction


def ceiling(x):
    # kz_term:ceiling/1
    if x < 0:
        return math.trunc(x)
    t = math.trunc(x)
    return t if x - t == 0 else t + 1


def kazoo(R, RI, RM, Sur, NoCharge, Disc, Bs, Off):
    secs = Bs - Off
    if secs <= 0 or secs <= NoCharge:
        return 0, 0
    if RI == 0:
        RI = 60
    if secs <= RM:
        charged, cost = RM, math.trunc(Sur + ((RM / 60) * R))
    else:
        charged = ceiling(secs / RI) * RI
        cost = math.trunc(Sur + ((RM / 60) * R) + (ceiling((secs - RM) / RI) * ((RI / 60) * R)))
    discount = math.trunc((Disc * 0.01) * cost)
    return charged, math.trunc(cost - discount)


def exact(R, RI, RM, Sur, NoCharge, Disc, Bs, Off):
    secs = Bs - Off
    if secs <= 0 or secs <= NoCharge:
        return 0
    if RI == 0:
        RI = 60
    if secs <= RM:
        cost = Sur + Fraction(RM, 60) * R
    else:
        steps = -((RM - secs) // RI)  # exact ceiling of (secs - RM) / RI
        cost = Sur + Fraction(RM, 60) * R + steps * Fraction(RI, 60) * R
    cost = math.floor(cost)
    return cost - math.floor(Fraction(Disc, 100) * cost)


def main():
    defaults = [0, 60, 0, 0, 0, 0, 0, 0]
    out = []
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        v = [d if p == "-" else int(p) for p, d in zip(parts, defaults)]
        charged, kcost = kazoo(*v)
        out.append(f"{charged} {kcost} {exact(*v)}")
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
