defmodule ExESDB.Test.Echo do
  @moduledoc false
  # Runs on peer nodes in tests: sends every message it gets to `parent`.
  def forward(parent) do
    receive do
      msg -> send(parent, {:echo, node(), msg})
    end

    forward(parent)
  end
end
