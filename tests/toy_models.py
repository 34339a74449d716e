"""Small systems with hand-checked answers, for testing the explorer."""
from pddgpu_verify.model.builder import ProgramBuilder
from pddgpu_verify.model.expr import Local, Var, and_, eq, or_, not_, Pc
from pddgpu_verify.model.program import Model, Property, ThreadDef, VarDecl


def lost_update(n_threads=2, atomic=False):
    """Each thread does counter := counter + 1 as read then write (or atomically)."""
    threads = []
    for i in range(n_threads):
        b = ProgramBuilder("inc")
        b.local("tmp", bits=8)
        if atomic:
            b.go("inc", "done", [(Var("counter"), Var("counter") + 1)])
        else:
            b.go("read", "write", [(Local("tmp"), Var("counter"))])
            b.go("write", "done", [(Var("counter"), Local("tmp") + 1)])
        threads.append(ThreadDef(f"t{i}", b.build(), group="inc"))
    props = {"no_lost_update": Property("no_lost_update", "final", "counter equals thread count",
                                        eq(Var("counter"), n_threads))}
    return Model("lost_update", (VarDecl("counter", bits=8),), tuple(threads), props)


def peterson(broken=False):
    """Peterson's mutual exclusion for two threads; ``broken`` drops the turn
    handshake (each waits only on the other's flag being clear OR turn), giving
    a mutual-exclusion violation."""
    threads = []
    for i in range(2):
        j = 1 - i
        b = ProgramBuilder("peterson")
        b.go("flag", "turn", [(Var(f"flag{i}"), 1)])
        b.go("turn", "wait", [(Var("turn"), j)])
        if broken:
            wait = or_(eq(Var(f"flag{j}"), 0), eq(Var("turn"), j))
        else:
            wait = or_(eq(Var(f"flag{j}"), 0), eq(Var("turn"), i))
        b.branch("wait", [(wait, [], "cs")])
        b.go("cs", "exit", call="cs")
        b.go("exit", "done", [(Var(f"flag{i}"), 0)])
        threads.append(ThreadDef(f"p{i}", b.build()))
    m0 = threads[0].program.labels.index("cs")
    mutex = not_(and_(eq(Pc(0), m0), eq(Pc(1), m0)))
    props = {"mutual_exclusion": Property("mutual_exclusion", "invariant", "at most one thread in cs", mutex)}
    return Model("peterson", (VarDecl("flag0", 2), VarDecl("flag1", 2), VarDecl("turn", 2)),
                 tuple(threads), props)


def lock_order(consistent=False):
    """Two threads take locks A and B; in opposite orders unless ``consistent``."""
    threads = []
    for i, order in enumerate((("A", "B"), ("A", "B") if consistent else ("B", "A"))):
        b = ProgramBuilder("locker")
        b.acquire("lock1", order[0], "lock2")
        b.acquire("lock2", order[1], "unlock2")
        b.release("unlock2", order[1], "unlock1")
        b.release("unlock1", order[0], "done")
        threads.append(ThreadDef(f"l{i}", b.build()))
    return Model("lock_order", (VarDecl("A", 8, kind="owner"), VarDecl("B", 8, kind="owner")),
                 tuple(threads), {}, locks={"A": "mutex", "B": "mutex"})


def spinner(fair_exit=True):
    """Thread w waits in a call for flag; thread s sets it (or never does)."""
    w = ProgramBuilder("waiter")
    w.branch("poll", [(eq(Var("flag"), 1), [], "done"), (eq(Var("flag"), 0), [], "poll")], call="wait")
    s = ProgramBuilder("setter")
    if fair_exit:
        s.go("set", "done", [(Var("flag"), 1)])
    else:
        s.go("set", "done", [])
    return Model("spinner", (VarDecl("flag", 2),), (ThreadDef("w", w.build()), ThreadDef("s", s.build())), {})
