_volccli_completion() {
    local cur=${COMP_WORDS[COMP_CWORD]} reply
    COMPREPLY=()
    while IFS= read -r reply; do
        [[ -n $reply ]] || continue
        [[ $cur == [\"\']* ]] || printf -v reply %q "$reply"
        COMPREPLY+=("$reply")
    done < <(env COMP_WORDS="${COMP_WORDS[*]}" COMP_CWORD="$COMP_CWORD" \
        _VOLCCLI_COMPLETE=complete_bash "$1")
    return 0
}

complete -o default -F _volccli_completion volccli
