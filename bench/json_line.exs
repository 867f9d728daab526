# json_line.exs: a benchmark result as one JSON object on one line, the
# form every bench script prints (loaded with Code.require_file). Binary
# values are written as strings, others (numbers, booleans) as they are.
defmodule BenchJson do
  @moduledoc false
  def line(fields) do
    body =
      Enum.map_join(fields, ",", fn
        {k, v} when is_binary(v) -> ~s("#{k}":"#{v}")
        {k, v} -> ~s("#{k}":#{v})
      end)

    "{" <> body <> "}"
  end
end
