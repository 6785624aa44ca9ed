"""The exported ONNX graph's attention, LayerNorm and GELU fused into onnxruntime's kernels.

tf2onnx writes each of them as a run of small operators: attention as MatMul(q, k^T) ->
Softmax -> MatMul(., v) over heads-major (B, heads, N, head_dim) tensors (the export's
form, `utils.onnx_attention()`), LayerNorm as TensorFlow's moments and batch-norm
arithmetic (13 operators), GELU as 0.5 x (1 - erf(-x / sqrt 2)) (6). onnxruntime runs each
operator as a pass over memory; its own kernels do each in one: the contrib operators
`com.microsoft.MultiHeadAttention` (scores, softmax and weighted sum in one kernel) and
`com.microsoft.Gelu`, and LayerNormalization (ONNX's from opset 17: a graph of an older
opset is moved to 17, under which every operator the export writes means the same).
On a 2-core AVX2 CPU, for ViT-B's 1568 tokens at batch 1: attention 0.62 s for the 12
blocks against 0.70 s for MatMul-Softmax-MatMul and 0.87 s with the softmax written out as
the CPU's query-chunked path does; 25 LayerNorms of (1568, 768) 0.009 s against 0.046 s;
12 GELUs of (1568, 3072) 0.041 s against 0.123 s (each measured alone).

onnxruntime's own fusion tool (`onnxruntime.transformers.optimizer`, model types bert,
bert_tf, vit) matches the forms PyTorch and keras2onnx write and fuses none of these. The
int8 file takes the fusions (`export.quantize_onnx`): it is an onnxruntime file already,
its quantised matmuls being contrib operators. Float ONNX files keep standard operators
for every runtime.

Every fusion matches its pattern exactly, constants included, and leaves anything else as
it is: a graph that does not match runs as before, only slower.
"""

import math
from collections import defaultdict

import numpy as np

MICROSOFT = "com.microsoft"


def fuse_for_onnxruntime(model):
    """Fuses attention, LayerNorm and GELU in `model` (an onnx ModelProto with inferred
    shapes) in place; returns {operator: how many} for the fused operators written.
    A graph of an ONNX opset before 15 (Softmax, Squeeze and the reductions meant otherwise
    before 13) is left as it is."""
    from onnx import helper

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 15:
        return {"MultiHeadAttention": 0, "LayerNormalization": 0, "Gelu": 0}
    counts = {"MultiHeadAttention": _fuse(model, _attention),
              "LayerNormalization": _fuse(model, _layer_norm),
              "Gelu": _fuse(model, _gelu)}
    if (counts["MultiHeadAttention"] or counts["Gelu"]) and not any(
            o.domain == MICROSOFT for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MICROSOFT, 1))
    if counts["LayerNormalization"]:
        for entry in model.opset_import:  # LayerNormalization is ONNX's from opset 17; of
            # the operators changed in 16 and 17 only RoiAlign changed meaning, which no
            # exported model holds
            if entry.domain in ("", "ai.onnx") and entry.version < 17:
                entry.version = 17
    return counts


class _Graph:
    """Look-ups over a graph's nodes: who makes and who reads each tensor (a node whose
    If or Loop bodies read it counting as a reader), the scalar constants (initializers that
    are also graph inputs are not constants) and the inferred shapes and element types."""

    def __init__(self, graph):
        self.graph = graph
        self.producer = {out: node for node in graph.node for out in node.output}
        self.consumers = defaultdict(list)
        for node in graph.node:
            for name in dict.fromkeys(list(node.input) + sorted(_subgraph_reads(node))):
                self.consumers[name].append(node)  # a node reading a tensor twice once
        self.outputs = {o.name for o in graph.output}
        inputs = {i.name for i in graph.input}
        self.scalars = {k: v for k, v in _scalar_constants(graph).items() if k not in inputs}
        self.shapes, self.types = _static_shapes(graph)
        self.names = {name for node in graph.node for name in node.output} | {
            t.name for t in graph.initializer} | inputs

    def float32(self, *names):
        """Whether every tensor in `names` is known to be float32 (the fused kernels'
        type here)."""
        from onnx import TensorProto

        return all(self.types.get(name) == TensorProto.FLOAT for name in names)

    def fresh(self, base):
        """A tensor name not yet in the graph, from `base`."""
        name, count = base, 1
        while name in self.names:
            name, count = f"{base}_{count}", count + 1
        self.names.add(name)
        return name

    def made_by(self, name, op_type):
        """The node of `op_type` that makes `name`, or None."""
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op_type else None

    def only_reader(self, name, op_type):
        """The one node reading `name` if it is of `op_type` and `name` is no graph
        output, else None."""
        readers = self.consumers[name]
        if name in self.outputs or len(readers) != 1 or readers[0].op_type != op_type:
            return None
        return readers[0]

    def internal(self, nodes, ending):
        """Whether every output of `nodes` but `ending`'s is read only by `nodes`."""
        inside = {id(n) for n in nodes}
        for node in nodes:
            if node is ending:
                continue
            for out in node.output:
                if out in self.outputs or any(id(r) not in inside for r in self.consumers[out]):
                    return False
        return True

    def scalar(self, node, value, tolerance=1e-6):
        """The index of `node`'s input that is the scalar constant `value` (any value when
        `value` is None), or None."""
        for index, name in enumerate(node.input):
            found = self.scalars.get(name)
            if found is not None and (value is None or abs(found - value) <= tolerance):
                return index
        return None

    def add_int64(self, name, values):
        """Adds an int64 initializer; returns its name."""
        from onnx import numpy_helper

        self.graph.initializer.append(numpy_helper.from_array(np.asarray(values, np.int64), name))
        return name

    def namer(self, node):
        """Fresh names for the tensors standing in for `node`'s pattern, one per suffix."""
        base = node.output[0].replace("/", "_").replace(":", "_") + "_fused_"
        made = {}

        def name(suffix):
            if suffix not in made:
                made[suffix] = self.fresh(base + suffix)
            return made[suffix]

        return name


def _fuse(model, matcher):
    """Runs `matcher(graph, node)` on every node; each match gives (nodes to remove, the
    last of them, new nodes), the new nodes going where the last one was (its inputs all
    exist by then). Returns the number of matches."""
    graph = _Graph(model.graph)
    replaced, removed = {}, set()
    for node in list(model.graph.node):
        if id(node) in removed:
            continue
        match = matcher(graph, node)
        if match is None:
            continue
        old, last, new = match
        if any(id(n) in removed for n in old):
            continue
        replaced[id(last)] = new
        removed.update(id(n) for n in old)
    if not replaced:
        return 0
    kept = []
    for node in model.graph.node:
        if id(node) in replaced:
            kept.extend(replaced[id(node)])
        elif id(node) not in removed:
            kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    _drop_unread(model.graph)
    return len(replaced)


def _drop_unread(graph):
    """Removes the initializers no node reads any more and the shapes of tensors no node
    makes any more (onnxruntime warns of each unread initializer). Graph inputs stay."""
    read = _names_read(graph) | {o.name for o in graph.output} | {i.name for i in graph.input}
    kept = [t for t in graph.initializer if t.name in read]
    if len(kept) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(kept)
    made = {name for node in graph.node for name in node.output}
    infos = [v for v in graph.value_info if v.name in made]
    if len(infos) != len(graph.value_info):
        del graph.value_info[:]
        graph.value_info.extend(infos)


def _attention(graph, softmax):
    """MatMul(q, k^T) -> [Mul by a scalar] -> Softmax(last axis) -> MatMul(., v), q and v
    (B, heads, N, head_dim) and k^T (B, heads, head_dim, N) of known heads and head_dim:
    one MultiHeadAttention over (B, N, heads x head_dim), the layouts moved by transposes
    that onnxruntime cancels against the graph's own."""
    from onnx import helper

    if softmax.op_type != "Softmax":
        return None
    if next((a.i for a in softmax.attribute if a.name == "axis"), -1) not in (-1, 3):
        return None
    scale, scaling = 1.0, graph.made_by(softmax.input[0], "Mul")
    scores_name = softmax.input[0]
    if scaling is not None:  # the scores scaled after their MatMul
        index = graph.scalar(scaling, None)
        if index is None:
            return None
        scale = graph.scalars[scaling.input[index]]
        scores_name = scaling.input[1 - index]
    scores = graph.made_by(scores_name, "MatMul")
    value_matmul = graph.only_reader(softmax.output[0], "MatMul")
    if scores is None or value_matmul is None or value_matmul.input[0] != softmax.output[0]:
        return None
    query, key_t = scores.input
    value = value_matmul.input[1]
    shapes = [graph.shapes.get(name) for name in (query, key_t, value)]
    if any(s is None or len(s) != 4 for s in shapes) or not graph.float32(query, key_t, value):
        return None
    heads, head_dim = shapes[0][1], shapes[0][3]
    if not (isinstance(heads, int) and isinstance(head_dim, int)):
        return None
    # every head its own keys and values (no MatMul broadcasting them over heads or over
    # the batch), keys as long as values
    if shapes[1][1] != heads or shapes[2][1] != heads:
        return None
    if not (_same(shapes[0][0], shapes[1][0]) and _same(shapes[0][0], shapes[2][0])
            and _same(shapes[1][3], shapes[2][2])):
        return None
    if shapes[1][2] != head_dim or shapes[2][3] != head_dim:
        return None
    old = [scores] + ([scaling] if scaling is not None else []) + [softmax, value_matmul]
    if not graph.internal(old, value_matmul):
        return None
    name = graph.namer(value_matmul)
    flat = graph.add_int64(name("flat"), [0, 0, -1])
    split = graph.add_int64(name("split"), [0, 0, heads, head_dim])
    new = [
        helper.make_node("Transpose", [query], [name("q4")], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", [name("q4"), flat], [name("q")]),
        helper.make_node("Transpose", [key_t], [name("k4")], perm=[0, 3, 1, 2]),
        helper.make_node("Reshape", [name("k4"), flat], [name("k")]),
        helper.make_node("Transpose", [value], [name("v4")], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", [name("v4"), flat], [name("v")]),
        helper.make_node("MultiHeadAttention", [name("q"), name("k"), name("v")],
                         [name("out")], domain=MICROSOFT, num_heads=heads,
                         scale=float(scale), name=name("mha")),
        helper.make_node("Reshape", [name("out"), split], [name("out4")]),
        helper.make_node("Transpose", [name("out4")], list(value_matmul.output),
                         perm=[0, 2, 1, 3]),
    ]
    return old, value_matmul, new


def _layer_norm(graph, mean):
    """TensorFlow's LayerNorm over the last axis of (B, N, D), as tf2onnx writes it:
        mean = GlobalAveragePool(x); var = GlobalAveragePool((x - mean) * (x - mean))
        a = Reciprocal(Sqrt(var + eps)) * gamma
        y = x * a + (Neg(mean) * a + beta)
    (without the Add of beta where the export folded it away as zeros, as in a freshly
    initialised model): one LayerNormalization(x, gamma, beta, epsilon), gamma and beta
    made (D,)."""
    from onnx import helper

    if mean.op_type != "GlobalAveragePool":
        return None
    x = mean.input[0]
    shape = graph.shapes.get(x)
    if shape is None or len(shape) != 3 or not isinstance(shape[2], int) or not graph.float32(x):
        return None
    readers = {n.op_type: n for n in graph.consumers[mean.output[0]]}
    if len(graph.consumers[mean.output[0]]) != 2 or set(readers) != {"Neg", "Sub"}:
        return None
    negate, difference = readers["Neg"], readers["Sub"]
    if list(difference.input) != [x, mean.output[0]]:
        return None
    square = graph.only_reader(difference.output[0], "Mul")
    if square is None or list(square.input) != [difference.output[0]] * 2:
        return None
    chain, node = [], square
    for op_type in ("GlobalAveragePool", "Add", "Sqrt", "Reciprocal"):
        node = graph.only_reader(node.output[0], op_type)
        if node is None:
            return None
        chain.append(node)
    variance, shift, root, inverse = chain
    if graph.scalar(shift, None) is None:
        return None
    epsilon = graph.scalars[shift.input[graph.scalar(shift, None)]]
    factor = graph.only_reader(inverse.output[0], "Mul")  # a = 1/std * gamma
    if factor is None:
        return None
    gamma = factor.input[1] if factor.input[0] == inverse.output[0] else factor.input[0]
    uses = graph.consumers[factor.output[0]]
    if len(uses) != 2 or any(u.op_type != "Mul" for u in uses):
        return None
    scaled_x = next((u for u in uses if x in u.input), None)
    scaled_mean = next((u for u in uses if negate.output[0] in u.input), None)
    if scaled_x is None or scaled_mean is None or scaled_x is scaled_mean:
        return None
    # y = x * a + (-mean * a + beta), or x * a + -mean * a where beta was folded away as zeros
    offset = graph.only_reader(scaled_mean.output[0], "Add")
    if offset is None:
        return None
    beta = None
    if scaled_x.output[0] in offset.input:
        total, offset = offset, None
    else:
        beta = offset.input[1] if offset.input[0] == scaled_mean.output[0] else offset.input[0]
        total = graph.only_reader(offset.output[0], "Add")
        if total is None or scaled_x.output[0] not in total.input:
            return None
    width = shape[2]
    for tensor in (gamma, beta):  # per channel: (D,), (1, D) or (1, 1, D)
        found = graph.shapes.get(tensor) if tensor is not None else (width,)
        if found is None or not found or tuple(found[:-1]) != (1,) * (len(found) - 1):
            return None
        if found[-1] != width:
            return None
    old = [n for n in (mean, negate, difference, square, variance, shift, root, inverse,
                       factor, scaled_x, scaled_mean, offset, total) if n is not None]
    if not graph.internal(old, total):
        return None
    name = graph.namer(total)
    vector = graph.add_int64(name("vector"), [-1])
    new = [helper.make_node("Reshape", [gamma, vector], [name("gamma")])]
    inputs = [x, name("gamma")]
    if beta is not None:
        new.append(helper.make_node("Reshape", [beta, vector], [name("beta")]))
        inputs.append(name("beta"))
    new.append(helper.make_node("LayerNormalization", inputs, list(total.output), axis=-1,
                                epsilon=float(epsilon), name=name("layer_norm")))
    return old, total, new


def _gelu(graph, erf):
    """The exact GELU as tf2onnx writes TensorFlow's (Erfc as 1 - Erf):
        y = (0.5 * x) * (1 - Erf(Neg(x) * 1/sqrt(2)))
    one com.microsoft.Gelu(x)."""
    from onnx import helper

    if erf.op_type != "Erf":
        return None
    inner = graph.made_by(erf.input[0], "Mul")
    index = None if inner is None else graph.scalar(inner, 1 / math.sqrt(2))
    if index is None:
        return None
    negate = graph.made_by(inner.input[1 - index], "Neg")
    complement = graph.only_reader(erf.output[0], "Sub")
    if negate is None or complement is None or complement.input[1] != erf.output[0]:
        return None
    if graph.scalars.get(complement.input[0]) != 1.0:
        return None
    x = negate.input[0]
    if not graph.float32(x):
        return None
    product = graph.only_reader(complement.output[0], "Mul")
    if product is None:
        return None
    half = graph.made_by(
        product.input[0] if product.input[1] == complement.output[0] else product.input[1], "Mul")
    if half is None or x not in half.input or graph.scalar(half, 0.5) is None:
        return None
    old = [half, negate, inner, erf, complement, product]
    if not graph.internal(old, product):
        return None
    new = [helper.make_node("Gelu", [x], list(product.output), domain=MICROSOFT,
                            name=graph.namer(product)("gelu"))]
    return old, product, new


def _same(a, b):
    """Whether two dimensions can be equal: equal where both are known numbers (shape
    inference names unknown batch sizes apart even where they are one); a known 1 against
    an unknown size could be a broadcast, so it is not."""
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return a != 1 and b != 1


def _names_read(graph):
    """Every tensor name the graph's nodes read, inside their subgraphs (If, Loop) too."""
    names = set()
    for node in graph.node:
        names.update(node.input)
        names |= _subgraph_reads(node)
    return names


def _subgraph_reads(node):
    """The names read inside `node`'s subgraphs (an If's branches, a Loop's body)."""
    names = set()
    for subgraph in subgraphs(node):
        names |= _names_read(subgraph)
    return names


def subgraphs(node):
    """`node`'s subgraphs: an If's branches, a Loop's or Scan's body."""
    for attribute in node.attribute:
        if attribute.HasField("g"):
            yield attribute.g
        yield from attribute.graphs


def _scalar_constants(graph):
    """{name: float} of the graph's one-element float initializers and Constant nodes."""
    from onnx import numpy_helper

    found = {}
    tensors = [(t.name, t) for t in graph.initializer]
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    tensors.append((node.output[0], attribute.t))
    for name, tensor in tensors:
        if int(np.prod(tensor.dims)) == 1 and tensor.data_type in (1, 10, 11, 16):
            found[name] = float(numpy_helper.to_array(tensor).reshape(()))
    return found


def _static_shapes(graph):
    """({name: tuple}, {name: element type}) of what shape inference recorded and of the
    initializers; an unknown dimension is its symbolic name or None."""
    shapes = {t.name: tuple(t.dims) for t in graph.initializer}
    types = {t.name: t.data_type for t in graph.initializer}
    for info in list(graph.value_info) + list(graph.input) + list(graph.output):
        tensor = info.type.tensor_type
        if tensor.elem_type:
            types[info.name] = tensor.elem_type
        if not tensor.HasField("shape"):
            continue
        shapes[info.name] = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in tensor.shape.dim)
    return shapes, types
