-- JSON helpers over lua-cjson. Debian's lua-cjson 2.1.0 encodes an empty
-- table as {} and has no way to mark it as a list, so fields that must be
-- lists even when empty are spliced in here.
local cjson = require("cjson")

local M = {}

-- Encodes object `obj` with `key` set to the list `list` (possibly empty).
function M.encode_with_list(obj, key, list)
	if #list > 0 then
		obj[key] = list
		return cjson.encode(obj)
	end
	obj[key] = nil
	local s = cjson.encode(obj)
	local sep = s == "{}" and "" or ","
	return s:sub(1, -2) .. sep .. cjson.encode(key) .. ":[]}"
end

return M
