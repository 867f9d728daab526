defmodule ExESDB.ElixirApiConformanceTest do
  use ExESDB.ApiConformance, driver: ExESDB.Test.Api.Elixir, async: true
end

defmodule ExESDB.ErlangApiConformanceTest do
  use ExESDB.ApiConformance, driver: ExESDB.Test.Api.Erlang, async: true
end
